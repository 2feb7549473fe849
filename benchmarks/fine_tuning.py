"""Fine-tuning against training from scratch, with the same steps on the same data (docs/fine-tuning.md).

    python benchmarks/fine_tuning.py --part text,images --seeds 0,1,2 [--steps 300] [--out runs/fine-tuning]
        [--ways fine-tune,lora,scratch] [--lora-learning-rate 0.01]

- text: the demo GPT (defaults) pre-trained on ``pydoc``, then trained ``--steps`` steps on ``docstrings:numpy``
  (API reference, another style) three ways: every weight from the base, LoRA adapters on the base (rank 8 on
  every block's attention projections), and every weight from scratch (its own tokenizer). Figure: validation
  bits per byte on the held-out tail of the numpy docstrings (lower is better; bytes, so that tokenizers compare).
- images: a ``cgan`` (defaults) pre-trained on digits 0-4, then trained on digits 5-9 (as labels 0-4) for 10% of
  its pre-training steps, from the base and from scratch. Figures: Frechet distance and label accuracy from
  ``genloom eval`` on digits 5-9.

A text base already in OUT (from an earlier run) is reused. Every run trains in this process on the CPU with the
training seed; a JSON line per run goes to
``OUT/runs.jsonl`` and the table of means and standard deviations over the seeds is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

LORA = {"lora_rank": 8}


def trained(generator: str, data: str, out: Path, seed: int, **settings: Any) -> tuple[dict[str, Any], float]:
    """Train into ``out`` (replacing it); the manifest as JSON and the wall time."""
    import shutil

    import genloom

    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    manifest = genloom.train(generator, data, out, progress=False, device="cpu", seed=seed, **settings)
    return manifest.model_dump(mode="json"), time.perf_counter() - started


def text_runs(root: Path, seed: int, steps: int, ways: list[str], lora_lr: float | None) -> list[dict[str, Any]]:
    import genloom

    base = root / f"gpt-pydoc-{seed}"
    if (base / "manifest.json").is_file():  # pre-trained by an earlier run of this script: its time is its own
        base_seconds = json.loads((base / "manifest.json").read_text())["training"]["seconds"]
    else:
        _, base_seconds = trained("gpt", "pydoc", base, seed)
    lora = {**LORA, **({"learning_rate": lora_lr} if lora_lr is not None else {})}
    runs = {"fine-tune": {"init_from": base}, "lora": {"init_from": base, **lora}, "scratch": {}}
    rows = []
    for how, extra in ((way, runs[way]) for way in ways):
        out = root / f"gpt-numpy-{how}-{seed}"
        manifest, seconds = trained("gpt", "docstrings:numpy", out, seed, steps=steps, **extra)
        network = genloom.load(out).generator.modules["model"]
        adapter = out / "adapter.safetensors"
        rows.append(
            {
                "part": "text",
                "how": how if how != "lora" or lora_lr is None else f"lora lr={lora_lr:g}",
                "seed": seed,
                "steps": manifest["training"]["steps"],
                "bits_per_byte": manifest["training"]["final_metrics"]["eval/bits_per_byte"],
                "trainable_parameters": sum(p.numel() for p in network.parameters() if p.requires_grad),
                "adapter_bytes": adapter.stat().st_size if adapter.exists() else None,
                "seconds": round(seconds, 1),
                "base_seconds": round(base_seconds, 1),
            }
        )
    return rows


def image_runs(root: Path, seed: int) -> list[dict[str, Any]]:
    import numpy as np

    from genloom.evaluation import evaluate_model
    from genloom.plugins import get_registry

    digits = get_registry().open_data("digits")
    sets = {}
    for name, keep in (("0-4", digits.labels < 5), ("5-9", digits.labels >= 5)):
        path = root / f"digits-{name}.npz"
        np.savez(path, images=digits.images[keep][:, 0], labels=digits.labels[keep] % 5)
        sets[name] = f"npz:{path}"
    base = root / f"cgan-0-4-{seed}"
    manifest, base_seconds = trained("cgan", sets["0-4"], base, seed)
    steps = manifest["training"]["steps"] // 10
    rows = []
    for how, extra in (("fine-tune", {"init_from": base}), ("scratch", {})):
        out = root / f"cgan-5-9-{how}-{seed}"
        _, seconds = trained("cgan", sets["5-9"], out, seed, steps=steps, **extra)
        report = evaluate_model(out, sets["5-9"])
        assert report.generated is not None and report.real is not None
        rows.append(
            {
                "part": "images",
                "how": how,
                "seed": seed,
                "steps": steps,
                "frechet_distance": report.generated.frechet_distance,
                "label_accuracy": report.generated.label_accuracy,
                "real_frechet_distance": report.real.frechet_distance,
                "seconds": round(seconds, 1),
                "base_seconds": round(base_seconds, 1),
            }
        )
    return rows


def summary(rows: list[dict[str, Any]]) -> None:
    """Mean ± standard deviation of each figure, per part and way of training."""
    for part, figures in (
        ("text", ("bits_per_byte", "trainable_parameters", "adapter_bytes", "seconds", "base_seconds")),
        ("images", ("frechet_distance", "label_accuracy", "real_frechet_distance", "seconds", "base_seconds")),
    ):
        for how in dict.fromkeys(row["how"] for row in rows if row["part"] == part):
            chosen = [row for row in rows if row["part"] == part and row["how"] == how]
            if not chosen:
                continue
            cells = []
            for figure in figures:
                values = [row[figure] for row in chosen if row[figure] is not None]
                if values:
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    cells.append(f"{figure} {statistics.mean(values):.4g} ± {spread:.2g}")
            print(f"{part:7s} {how:10s} ({len(chosen)} seeds): " + "; ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="text,images", help="text, images or both (comma-separated)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300, help="steps of the text runs on the second corpus")
    parser.add_argument("--out", type=Path, default=Path("runs/fine-tuning"))
    parser.add_argument("--ways", default="fine-tune,lora,scratch", help="text: which of fine-tune, lora, scratch")
    parser.add_argument(
        "--lora-learning-rate", type=float, help="text: the LoRA runs' learning rate (default: the GPT's)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for part in args.part.split(","):
            if part == "text":
                made = text_runs(args.out, seed, args.steps, args.ways.split(","), args.lora_learning_rate)
            else:
                made = image_runs(args.out, seed)
            with (args.out / "runs.jsonl").open("a", encoding="utf-8") as log:
                for row in made:
                    log.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
            rows += made
    summary(rows)


if __name__ == "__main__":
    main()
