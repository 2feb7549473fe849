"""The image generators' quality ablation: train with a config, evaluate, over several training seeds.

    python benchmarks/image_quality.py --generators gan,cgan,vae,cvae --seeds 0,1,2 [--data digits]
        [--set KEY=VALUE ...] [--label NAME] [--out runs/image-quality]

Each (generator, seed) trains from scratch with the generator's defaults plus the
``--set`` values (seed set to the training seed), in one process with one torch
thread, then runs ``genloom eval`` on it (898 samples vs 898 real on ``digits``, eval
seed 0). A line of JSON per run is appended to ``OUT/runs.jsonl``, and the table of
three-seed means and standard deviations for this label is printed: Frechet distance,
precision, recall, label accuracy and the training wall time. The tables in
docs/image-generators.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

FIGURES = ("frechet_distance", "precision", "recall", "label_accuracy")


def run_one(generator: str, data: str, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Train ``generator`` on ``data`` with ``settings`` and training seed ``seed``; its eval figures and wall time."""
    import genloom
    from genloom.evaluation import evaluate_model

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / generator
        started = time.perf_counter()
        genloom.train(generator, data, out, progress=False, device="cpu", **{**settings, "seed": seed})
        seconds = time.perf_counter() - started
        report = evaluate_model(out, data)
    assert report.generated is not None and report.real is not None
    return {
        "generator": generator,
        "data": data,
        "seed": seed,
        "settings": settings,
        "train_seconds": seconds,
        "generated": report.generated.model_dump(),
        "real": report.real.model_dump(),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Mean ± standard deviation of each figure over ``runs`` (one generator, one setting)."""
    cells = {}
    for figure in (*FIGURES, "train_seconds"):
        values = [run["train_seconds"] if figure == "train_seconds" else run["generated"][figure] for run in runs]
        if values[0] is None:
            continue
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells[figure] = f"{statistics.mean(values):.3g} ± {spread:.2g}"
    return cells


def parse_value(text: str) -> Any:
    """A ``--set`` value as JSON where it parses (numbers, booleans), else as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", default="gan,cgan,vae,cvae")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--out", type=Path, default=Path("runs/image-quality"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    settings = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.settings)}
    args.out.mkdir(parents=True, exist_ok=True)
    for generator in args.generators.split(","):
        runs = []
        for seed in (int(seed) for seed in args.seeds.split(",")):
            run = {"label": args.label, **run_one(generator, args.data, seed, settings)}
            runs.append(run)
            with (args.out / "runs.jsonl").open("a") as log:
                log.write(json.dumps(run) + "\n")
            print(json.dumps({key: run[key] for key in ("label", "generator", "seed", "train_seconds", "generated")}))
        real = runs[0]["real"]
        print(f"{args.label} {generator} {args.data}: {summarise(runs)}  real: {real}", flush=True)


if __name__ == "__main__":
    main()
