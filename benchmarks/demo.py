"""The main job of the README: list plugins, train on shipped data, generate.

    python benchmarks/demo.py [--out runs/demo] [--steps N]

Everything goes through genloom's public API, as an app would use it. The demo
owns its output folder and starts it afresh on each run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

import genloom
from genloom.cli import main as genloom_cli


def run(out: Path, steps: int | None) -> None:
    print("== plugins ==", flush=True)
    try:
        genloom_cli(["plugins"])
    except SystemExit as done:
        if done.code:
            raise

    model_dir = out / "digits-gan"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    print(f"\n== train gan on digits -> {model_dir} ==", flush=True)
    overrides = {"steps": steps} if steps else {}
    manifest = genloom.train("gan", "digits", model_dir, **overrides)
    print(f"trained {manifest.training.steps} steps in {manifest.training.seconds:.1f}s; loss curves: {model_dir / 'loss.png'}")

    print("\n== generate ==", flush=True)
    model = genloom.load(model_dir)
    started = time.perf_counter()
    result = model.generate(n=64, seed=0)
    seconds = time.perf_counter() - started
    grid_path = out / "digits-gan-samples.png"
    grid = result.grid()
    grid.resize((grid.width * 4, grid.height * 4), Image.Resampling.NEAREST).save(grid_path)
    print(f"64 images in {seconds * 1000:.1f} ms ({64 / seconds:,.0f} images/s, torch, CPU) -> {grid_path}")
    print(f"provenance: {result.provenance}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="Output folder (default: runs/demo).")
    parser.add_argument("--steps", type=int, help="Training steps (default: the generator's config).")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        run(args.out, args.steps)
    except genloom.GenloomError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
