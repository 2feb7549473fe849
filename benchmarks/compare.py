"""The whole comparison: genloom's paths against the peers and the machine's roofs, for every model the issue names.

    python benchmarks/compare.py [--out runs/compare] [--repeats 5] [--tokens 32]

Models: the demo's GAN, VAE and GPT (taken from ``runs/demo`` when the demo has
run, else trained here on short schedules); a GAN shaped like the DCGAN paper's
64x64 RGB generator; and a GPT shaped like GPT-2 small (12 layers, 768 wide,
50,257-token vocabulary, context 1,024), compared with a Hugging Face GPT-2 of the
same shape. The two shaped models have random weights: speed does not depend on
them. Each model is measured by ``genloom bench`` in a process of its own, so that
its rows measure as they would alone, with nothing the models before it left
running, allocated or imported. Writes ``compare.json`` and ``compare.png`` into
``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import genloom
from genloom.bench.report import chart, table
from genloom.bench.run import BenchReport
from genloom.fileio import atomic_write_text

DEMO_MODELS = (("gan", "digits", 500), ("vae", "digits", 2000), ("gpt", "pydoc", 200))
GPT2_SMALL = {"layers": 12, "heads": 12, "width": 768, "context_length": 1024}
GPT2_VOCAB = 50257
DCGAN_64 = {"latent_dim": 100, "width": 64}


def demo_model(demo: Path, out: Path, name: str, data: str, steps: int) -> Path:
    """The demo's trained model, or a short training run of the same generator."""
    trained = demo / f"{data}-{name}"
    if (trained / "manifest.json").is_file():
        return trained
    target = out / f"{data}-{name}"
    if not (target / "manifest.json").is_file():
        genloom.train(name, data, target, steps=steps, progress=False)
    return target


def gpt2_small(out: Path) -> Path:
    """A randomly initialised GPT of GPT-2 small's shape, saved as a genloom model (its tokenizer only feeds
    prompts)."""

    def make() -> genloom.Generator:
        from genloom.tokenizer import Tokenizer
        from genloom_text.generator import GPTConfig, GPTGenerator

        generator = GPTGenerator(GPTConfig(**GPT2_SMALL))
        generator.tokenizer = Tokenizer.train(
            genloom.plugins.get_registry().open_data("pydoc").text[:200_000], "bpe", 1024
        )
        generator.facts = {"vocab_size": GPT2_VOCAB, "prepend_end_of_text": True, "weights": "random"}
        return generator

    return untrained(make, out / "gpt2-small-shape")


def dcgan_64(out: Path) -> Path:
    """A randomly initialised GAN shaped like the DCGAN paper's generator: latent 100, 512-256-128-64 channels,
    64x64 RGB."""

    def make() -> genloom.Generator:
        from genloom_gan.generator import DCGAN, DCGANConfig

        generator = DCGAN(DCGANConfig(**DCGAN_64))
        generator.facts = {"channels": 3, "height": 64, "width": 64, "weights": "random"}
        return generator

    return untrained(make, out / "dcgan-64-shape")


def untrained(make: Callable[[], genloom.Generator], target: Path) -> Path:
    """The generator ``make()`` returns (its facts set), saved in ``target`` with freshly initialised weights,
    unless it is there already."""
    if not (target / "manifest.json").is_file():
        import torch

        generator = make()
        torch.manual_seed(0)
        generator.modules = generator.build()
        genloom.save(generator, target)
    return target


def bench_alone(model: Path, repeats: int, tokens: int, scratch: Path) -> BenchReport:
    """``genloom bench MODEL`` in a fresh process (its table printed as it goes), read back from its ``--json``."""
    figures = scratch / f"{model.name}.json"
    print(f"== genloom bench {model} ==", flush=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genloom",
            "bench",
            str(model),
            "--repeats",
            str(repeats),
            "--tokens",
            str(tokens),
            "--json",
            str(figures),
        ],
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"compare: error: genloom bench {model} exited with {done.returncode}")
    return BenchReport.model_validate_json(figures.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="Where the demo left its models.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = [demo_model(args.demo, args.out, *spec) for spec in DEMO_MODELS] + [
        dcgan_64(args.out),
        gpt2_small(args.out),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        reports = [bench_alone(model, args.repeats, args.tokens, Path(scratch)) for model in models]
    busiest = max((r.machine.busy_elsewhere for r in reports if r.machine.busy_elsewhere is not None), default=None)
    combined = BenchReport(
        machine=reports[0].machine.model_copy(update={"busy_elsewhere": busiest}),
        provider=reports[0].provider,
        images=[row for r in reports for row in r.images],
        text=[row for r in reports for row in r.text],
        outputs=[row for r in reports for row in r.outputs],
        peer_unavailable=[line for r in reports for line in r.peer_unavailable],
    )
    print("== all models ==")
    print(table(combined))
    atomic_write_text(args.out / "compare.json", combined.model_dump_json(indent=2) + "\n")
    chart(combined, args.out / "compare.png")
    print(f"wrote {args.out / 'compare.json'} and {args.out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
