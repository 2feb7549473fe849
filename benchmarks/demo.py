"""The main job of the README: train small models on shipped data, export them, generate without torch, benchmark.

    python benchmarks/demo.py [--out runs/demo] [--steps N] [--repeats 3]

For a GAN and a VAE on scikit-learn's digits, a GPT on Python's documentation and a
TVAE on the Palmer penguins table (all shipped with installed packages): train,
export to ONNX (parity checked), generate through the ONNX Runtime path (a sample
grid PNG each, a few lines of text, 1,000 synthetic penguins as CSV), and print the
throughput table beside PyTorch and, for the GPT, Hugging Face ``transformers`` when
it is installed. Everything goes through genloom's public
API. The demo owns its output folder and starts it afresh on each run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

import genloom
from genloom.bench.machine import describe_machine
from genloom.bench.report import chart, table
from genloom.bench.run import BenchReport, bench_artifact
from genloom.cli import main as genloom_cli
from genloom.fileio import atomic_write_text

MODELS = (("gan", "digits"), ("vae", "digits"), ("gpt", "pydoc"), ("tvae", "penguins"))


def run(out: Path, steps: int | None, repeats: int) -> None:
    started = time.perf_counter()
    print("== plugins ==", flush=True)
    try:
        genloom_cli(["plugins"])
    except SystemExit as done:
        if done.code:
            raise

    exporter = genloom.plugins.get_registry().exporter("onnx").value
    exports = {}
    for name, data in MODELS:
        model_dir, export_dir = out / f"{data}-{name}", out / f"{data}-{name}-onnx"
        for folder in (model_dir, export_dir):
            if folder.exists():
                shutil.rmtree(folder)
        print(f"\n== train {name} on {data} -> {model_dir} ==", flush=True)
        manifest = genloom.train(name, data, model_dir, **({"steps": steps} if steps else {}))
        print(
            f"trained {manifest.training.steps} steps in {manifest.training.seconds:.1f}s; "
            f"curves: {model_dir / 'loss.png'}"
        )
        exported = exporter.export(model_dir, export_dir, int8=name == "gpt").export
        print(f"exported to {export_dir}; max |onnxruntime - torch| = {max(exported.parity_max_abs_diff.values()):.1e}")
        exports[name] = export_dir

    print("\n== generate through ONNX Runtime (no torch in this path) ==", flush=True)
    for name in ("gan", "vae"):
        result = genloom.load(exports[name]).generate(n=64, seed=0)
        grid = result.grid()
        path = out / f"digits-{name}-samples.png"
        grid.resize((grid.width * 4, grid.height * 4), Image.Resampling.NEAREST).save(path)
        print(f"{name}: 64 digits -> {path}")
    prompts = ["The list", "A module"]
    text = genloom.load(exports["gpt"]).generate(
        prompt=prompts, max_new_tokens=40, do_sample=True, temperature=0.8, top_p=0.9, seed=0
    )
    for prompt, continuation in zip(prompts, text.texts, strict=True):  # one sequence per prompt
        print(f"gpt: {prompt}{continuation}".replace("\n", "\n     "))
    rows = genloom.load(exports["tvae"]).generate(n=1000, seed=0)
    print(f"tvae: 1000 penguins -> {rows.to_csv(out / 'penguins-tvae-rows.csv')}; the first three:")
    print(rows.frame.head(3).to_string(index=False))

    print("\n== throughput ==", flush=True)
    machine = describe_machine(repeats)
    reports = [bench_artifact(out / f"{data}-{name}", repeats=repeats, machine=machine) for name, data in MODELS]
    combined = BenchReport(
        machine=machine,
        provider=reports[0].provider,
        images=[r for report in reports for r in report.images],
        text=[r for report in reports for r in report.text],
        outputs=[r for report in reports for r in report.outputs],
        peer_unavailable=[line for report in reports for line in report.peer_unavailable],
    )
    print(table(combined))
    atomic_write_text(out / "bench.json", combined.model_dump_json(indent=2) + "\n")
    chart(combined, out / "bench.png")
    print(
        f"\nfigures: {out / 'bench.json'}, chart: {out / 'bench.png'}; demo took {time.perf_counter() - started:.0f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="Output folder (default: runs/demo).")
    parser.add_argument("--steps", type=int, help="Training steps of every model (default: each generator's config).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per throughput figure (default 3).")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        run(args.out, args.steps, args.repeats)
    except genloom.GenloomError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
