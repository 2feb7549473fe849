"""Where an image export's time goes: ONNX Runtime's own per-node profile, with each node's GFLOP/s and share of
the roof.

    python benchmarks/profile_images.py EXPORT_DIR [--batch 256] [--runs 20]

Runs the export's generating graph on the CPU at one batch size with ONNX Runtime's
profiler on, and prints, per node of the graph ONNX Runtime actually runs (after its
fusions): milliseconds per run, share of the run, FLOPs counted from the shapes it
saw, GFLOP/s, and that rate as a share of the machine's matmul roof measured now.
This is the profile behind the image figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime

from genloom.artifacts import read_manifest
from genloom.bench.flops import op_flops
from genloom.bench.machine import describe_machine


def profile(export_dir: Path, batch: int, runs: int) -> list[dict]:
    """Per-node kernel time (median over ``runs``) and FLOPs of the export's first graph at ``batch``."""
    export = read_manifest(export_dir).export
    if export is None:
        raise SystemExit(f"{export_dir} is not an export: run `genloom export` first")
    graph = export.graphs[0]
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "profile")
        options.optimized_model_filepath = str(
            Path(scratch) / "optimized.onnx"
        )  # the graph after ONNX Runtime's fusions
        session = onnxruntime.InferenceSession(
            str(export_dir / graph.file), options, providers=["CPUExecutionProvider"]
        )
        first = session.get_inputs()[0]
        feeds = {first.name: np.random.default_rng(0).standard_normal((batch, first.shape[1]), dtype=np.float32)}
        if len(session.get_inputs()) > 1:
            feeds[session.get_inputs()[1].name] = np.zeros(batch, np.int64)
        for _ in range(runs + 2):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        weight_shapes = _weight_shapes(Path(options.optimized_model_filepath))
    per_node: dict[str, dict] = defaultdict(lambda: {"microseconds": []})
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args = event["args"]
        node = per_node[event["name"].removesuffix("_kernel_time")]
        activations = [next(iter(shape.values())) for shape in args.get("input_type_shape", [])][:1]
        output = next(iter(args["output_type_shape"][0].values())) if args.get("output_type_shape") else []
        weights = weight_shapes.get(event["name"].removesuffix("_kernel_time"), [])[
            :1
        ]  # profiles leave out prepacked weights
        node.update(op=args["op_name"], flops=op_flops(args["op_name"], activations + weights, output))
        node["microseconds"].append(event["dur"])
    return [
        {"node": name, "op": n["op"], "flops": n["flops"], "seconds": statistics.median(n["microseconds"][2:]) / 1e6}
        for name, n in per_node.items()
    ]


def _weight_shapes(optimized: Path) -> dict[str, list[list[int]]]:
    """Per node of the optimized graph, the shapes of the weights (initializers) among its inputs after the first."""
    import onnx

    model = onnx.load(str(optimized))
    initializers = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    return {
        node.name: [initializers[name] for name in node.input[1:] if name in initializers] for node in model.graph.node
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    roof = describe_machine().matmul_gflops
    nodes = sorted(profile(args.export, args.batch, args.runs), key=lambda n: -n["seconds"])
    total = sum(n["seconds"] for n in nodes)
    flops = sum(n["flops"] for n in nodes)
    print(
        f"{args.export} at batch {args.batch}: kernels {total * 1e3:.2f} ms per run, {flops / 1e9:.2f} GFLOP, "
        f"{flops / total / 1e9:.0f} GFLOP/s = {flops / total / 1e9 / roof:.0%} of the {roof:.0f} GFLOP/s matmul roof"
    )
    print(f"{'node':<48}{'op':<22}{'ms':>9}{'of run':>8}{'GFLOP/s':>9}{'of roof':>9}")
    for n in nodes:
        rate = n["flops"] / n["seconds"] / 1e9 if n["flops"] else None
        print(
            f"{n['node'][:47]:<48}{n['op']:<22}{n['seconds'] * 1e3:>9.3f}{n['seconds'] / total:>8.1%}"
            + (f"{rate:>9.0f}{rate / roof:>9.0%}" if rate else f"{'-':>9}{'-':>9}")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
