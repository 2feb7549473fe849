"""Text exports side by side: genloom's runtime against ONNX Runtime GenAI on the same export, the fused graph against
the portable one, block-wise quantization against fp32 and transformers, and the cost of a step along the text.

    python benchmarks/text_exports.py [--out runs/text-exports] [--repeats 7] [--parts demo,gpt2,steps,flips]

1. The demo's GPT (``runs/demo/pydoc-gpt`` when the demo has run, else trained here
   on a short schedule), exported fused (the default) and portable: 120 greedy tokens
   after a one-token prompt, batch 1 and 8, 1 and 2 ONNX Runtime threads, through
   genloom's runtime on both graphs and through GenAI (``onnxruntime_genai.Model``
   on the export folder as it is: its config's fixed seed and shared buffer) on the
   fused one. Every figure is the median of interleaved runs in this one process.
2. A GPT of GPT-2 small's shape (random weights), exported fused with its ``q8`` and
   ``q4`` variants (and the per-tensor ``int8`` one) and portable: 64 greedy tokens at batch 1 on 2 threads beside
   transformers ``generate`` (the yardstick, in the same run) and the machine's
   memory-bandwidth roof; the variants' agreement with fp32 as the export recorded it.
3. One decoding step's time at position 50 and at position 900 of that GPT, on the
   fused and on the portable graph.
4. Greedy tokens of the torch model against each export, position by position on the
   torch model's own text (teacher-forced): a differing token counts as a flip when
   the torch model's top-two logit gap there is under ``FLIP_EPSILON``, else as a
   mismatch.

``--parts`` runs only some of them (all four by default). Writes ``text_exports.json`` into ``--out`` (the parts
that ran) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import genloom
from genloom.artifacts import read_manifest
from genloom.bench.flops import weight_bytes_read
from genloom.bench.machine import read_bandwidth
from genloom.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent))
from compare import demo_model, gpt2_small

DEMO_TOKENS = 120
GPT2_TOKENS = 64
STEP_POSITIONS = (50, 900)
FLIP_EPSILON = 1e-3
"""A token that differs where the reference's top-two logit gap is under this counts as a flip, not a mismatch."""
PROMPTS = ["The", "def f(x):", "Return the value of", "A list of", "import"]
PARTS = ("demo", "gpt2", "steps", "flips")


def median_rates(calls: dict[str, Callable[[], object]], tokens: int, repeats: int) -> dict[str, float]:
    """Tokens/s of each call (``tokens`` per call), the median of ``repeats`` rounds that run every call in turn."""
    for call in calls.values():
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return {name: tokens / statistics.median(times) for name, times in seconds.items()}


def session_options(threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def genloom_call(model: Any, batch: int, tokens: int) -> Callable[[], object]:
    return lambda: model.generate(prompt=["The"] * batch, max_new_tokens=tokens, min_new_tokens=tokens)


def genai_call(export: Path, threads: int, ids: list[int], batch: int, tokens: int) -> Callable[[], object]:
    """GenAI's generation loop on the export folder, as its users run it, with the threads set as for genloom."""
    import onnxruntime_genai as og

    config = og.Config(str(export))
    threading = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": threading}}}))
    model = og.Model(config)
    prompts = np.array([ids] * batch, np.int32)

    def run() -> None:
        params = og.GeneratorParams(model)
        params.set_search_options(
            max_length=len(ids) + tokens, min_length=len(ids) + tokens, do_sample=False, batch_size=batch
        )
        generator = og.Generator(model, params)
        generator.append_tokens(prompts)
        while not generator.is_done():
            generator.generate_next_token()
        if len(generator.get_sequence(0)) != len(ids) + tokens:
            raise SystemExit("text_exports: GenAI stopped before the fixed number of tokens; the figures would lie")

    return run


def export(model_dir: Path, out: Path, **options: Any) -> Path:
    if not (out / "manifest.json").is_file():
        genloom.plugins.get_registry().exporter("onnx").value.export(model_dir, out, **options)
    return out


def demo_rows(model_dir: Path, out: Path, repeats: int) -> list[dict[str, Any]]:
    fused = export(model_dir, out / "demo-fused", q8=True, q4=True)
    portable = export(model_dir, out / "demo-portable", portable=True)
    rows = []
    for threads in (1, 2):
        on_fused = genloom.load(fused, providers="cpu", session_options=session_options(threads))
        on_portable = genloom.load(portable, providers="cpu", session_options=session_options(threads))
        ids = [on_fused.tokenizer.end_of_text, *on_fused.tokenizer.encode("The")]
        for batch in (1, 8):
            rates = median_rates(
                {
                    "genloom fused": genloom_call(on_fused, batch, DEMO_TOKENS),
                    "genloom portable": genloom_call(on_portable, batch, DEMO_TOKENS),
                    "genai fused": genai_call(fused, threads, ids, batch, DEMO_TOKENS),
                },
                batch * DEMO_TOKENS,
                repeats,
            )
            rows.append(
                {
                    "threads": threads,
                    "batch": batch,
                    **rates,
                    "genloom / genai": rates["genloom fused"] / rates["genai fused"],
                    "fused / portable": rates["genloom fused"] / rates["genloom portable"],
                }
            )
    return rows


def gpt2_rows(model_dir: Path, fused: Path, repeats: int) -> list[dict[str, Any]]:
    """Batch 1 on 2 threads: transformers, then genloom's fp32, int8, q8 and q4, with their share of the bandwidth
    roof."""
    from genloom_text.peer import transformers_decoder

    manifest = read_manifest(fused)
    assert manifest.export is not None, "an export's manifest"
    options = manifest.export.driver_options
    peer = transformers_decoder(
        options["layers"],
        options["heads"],
        options["heads"] * options["head_dim"],
        options["context_length"],
        int(manifest.facts["vocab_size"]),
    )
    threads = session_options(2)
    precisions = ("fp32", "int8", "q8", "q4")
    models = {p: genloom.load(fused, providers="cpu", session_options=threads, precision=p) for p in precisions}
    calls: dict[str, Callable[[], object]] = {"transformers": lambda: peer.decode(1, GPT2_TOKENS)}
    calls.update({f"genloom {p}": genloom_call(model, 1, GPT2_TOKENS) for p, model in models.items()})
    bandwidth = read_bandwidth(repeats)
    rates = median_rates(calls, GPT2_TOKENS, repeats)
    bandwidth = max(bandwidth, read_bandwidth(repeats))  # the faster of before and after: the roof is generous
    graph = manifest.export.graphs[0]
    files = {"fp32": graph.file, **graph.variants}
    rows = []
    for name, rate in rates.items():
        precision = name.removeprefix("genloom ")
        row: dict[str, Any] = {"path": name, "tokens_per_second": rate, "x transformers": rate / rates["transformers"]}
        if precision in files:
            weights = weight_bytes_read(fused / files[precision])
            row |= {"weight_bytes": weights, "share_of_roof": rate * weights / (bandwidth * 1e9)}
            if precision != "fp32":
                figures = manifest.export.variants[precision]
                row |= {
                    "agreement_with_fp32": figures.agreement_with_fp32,
                    "max_abs_diff": figures.max_abs_diff[graph.name],
                }
        rows.append(row | {"read_gbytes_per_second": bandwidth})
    return rows


def step_seconds(export_dir: Path, position: int, repeats: int) -> float:
    """Median seconds of one decoding step at ``position`` (a random prompt of that length first), batch 1."""
    model = genloom.load(export_dir, providers="cpu", session_options=session_options(2))
    prompt = np.random.default_rng(0).integers(1, 1000, (1, position))
    times = []
    for _ in range(repeats):
        session = model.session()
        session.start(prompt, np.ones_like(prompt))
        session.advance(np.array([1]))  # the first step warms the buffers
        started = time.perf_counter()
        for token in range(2, 12):
            session.advance(np.array([token]))
        times.append((time.perf_counter() - started) / 10)
    return statistics.median(times)


def flips(torch_dir: Path, exports: dict[str, Path], tokens: int) -> dict[str, dict[str, int]]:
    """Per export: positions compared, flips (differing where the torch top-two gap < FLIP_EPSILON) and mismatches."""
    import torch

    reference = genloom.load(torch_dir)
    generator = reference.generator
    network = generator.session().network  # the torch GPT
    sequences = [
        [generator.tokenizer.end_of_text, *generator.tokenizer.encode(p), *new]
        for p, new in zip(PROMPTS, reference.generate(prompt=PROMPTS, max_new_tokens=tokens).tokens, strict=True)
    ]
    counts = {}
    for name, export_dir in exports.items():
        model = genloom.load(export_dir, providers="cpu")
        compared = flipped = mismatched = 0
        for sequence in sequences:
            ids = np.array([sequence[:-1]], np.int64)
            with torch.no_grad():
                want = network(torch.from_numpy(ids))[0][0].numpy()
            got = model.session().start(ids, np.ones_like(ids), every_position=True)[0]
            top_two = np.sort(want, axis=-1)[:, -2:]
            differ = want.argmax(-1) != got.argmax(-1)
            close = (top_two[:, 1] - top_two[:, 0]) < FLIP_EPSILON
            compared += len(differ)
            flipped += int((differ & close).sum())
            mismatched += int((differ & ~close).sum())
        counts[name] = {"positions": compared, "flips": flipped, "mismatches": mismatched}
    return counts


def print_rows(title: str, rows: list[dict[str, Any]], digits: int) -> None:
    print(f"== {title} ==")
    for row in rows:
        print("  ".join(f"{k} {v:,.{digits}f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/text-exports"))
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="Where the demo left its models.")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Comma-separated, of {', '.join(PARTS)}.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: {', '.join(sorted(parts - set(PARTS)))} is not one of {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    demo_gpt = demo_model(args.demo, args.out, "gpt", "pydoc", 200)
    figures: dict[str, Any] = {}
    if "demo" in parts:
        figures["demo"] = demo_rows(demo_gpt, args.out, args.repeats)
        print_rows("demo GPT: tokens/s, 120 greedy tokens", figures["demo"], 2)
    if parts == {"demo"}:
        return write_figures(args.out, figures)
    gpt2 = gpt2_small(args.out)
    gpt2_fused = export(gpt2, args.out / "gpt2-fused", int8=True, q8=True, q4=True)
    gpt2_portable = export(gpt2, args.out / "gpt2-portable", portable=True)
    if "gpt2" in parts:
        figures["gpt2_small"] = gpt2_rows(gpt2, gpt2_fused, args.repeats)
        print_rows("GPT-2 small shape, batch 1, 2 threads", figures["gpt2_small"], 3)
    if "steps" in parts:
        figures["step_ms"] = {
            graph: {str(p): 1e3 * step_seconds(path, p, args.repeats) for p in STEP_POSITIONS}
            for graph, path in (("fused", gpt2_fused), ("portable", gpt2_portable))
        }
        rows = [{"graph": graph, **steps} for graph, steps in figures["step_ms"].items()]
        print_rows("GPT-2 small shape: one step at each position, ms", rows, 2)
    if "flips" in parts:
        demo_exports = {
            "fused": export(demo_gpt, args.out / "demo-fused", q8=True, q4=True),
            "portable": export(demo_gpt, args.out / "demo-portable", portable=True),
        }
        figures["flips"] = {
            "demo": flips(demo_gpt, demo_exports, 64),
            "gpt2_small": flips(gpt2, {"fused": gpt2_fused, "portable": gpt2_portable}, GPT2_TOKENS),
        }
        print(f"== greedy tokens against torch (flip epsilon {FLIP_EPSILON}) ==")
        print(json.dumps(figures["flips"]))
    return write_figures(args.out, figures)


def write_figures(out: Path, figures: dict[str, Any]) -> int:
    atomic_write_text(out / "text_exports.json", json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out / 'text_exports.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
