"""WaveNet sampling speed: naive PyTorch (the whole receptive field re-run for every sample), cached PyTorch (one
step per layer with per-layer queues) and ONNX Runtime (the exported step graph), in one run.

    python benchmarks/audio_speed.py MODEL_DIR [--export EXPORT_DIR] [--batches 1,16] [--steps 2000]
        [--naive-steps 100] [--repeats 3] [--json OUT.json]

MODEL_DIR is a trained ``wavenet`` (``genloom train wavenet --data notes --out MODEL_DIR``); EXPORT_DIR its export
(made with `genloom export` into a temporary folder when not given). First the three paths make the same 0.01 s
clip (batch 1, seed 0) through the plugin's one sampling loop (``generate_clips``), and the naive and cached clips
must be equal; the ONNX Runtime one is reported as equal or not. Then each path is timed over ``--steps`` sample
steps (``--naive-steps`` for the naive one, which is that slow), each step drawing the next level from its logits,
as its users run it: the model as ``genloom.load`` opens it (PyTorch on every core; ONNX Runtime with its default
session, as `genloom generate` runs it). Runs are interleaved (path after path, ``--repeats`` rounds) and the median
counts. A last row per batch times a graph with the step graph's inputs and outputs that computes nothing: the cost
of one ONNX Runtime run with that many state tensors.

Reports samples/s per stream and in all (batch x per stream), the real-time factor at 16 kHz (seconds of compute per
second of audio per stream; below 1 is faster than real time) and each path's speed over naive's. Prints a markdown
table on stdout and writes everything with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import genloom
from genloom_audio.kind import AudioSampling
from genloom_audio.mulaw import SILENCE, draw
from genloom_audio.nets import NaiveStepRunner, TorchStepRunner
from genloom_audio.sampler import ClipFormat, StepRunner, generate_clips

FLOOR_PATH = "onnxruntime, a graph of the same inputs and outputs that computes nothing"
REAL_TIME_RATE = 16_000
"""Samples per second of one real-time stream, as the issue measures it."""


def labels_of(model: Any, batch: int) -> list[int] | None:
    classes = int(model.manifest.facts.get("num_classes", 0))
    return [i % classes for i in range(batch)] if model.conditional else None


def timed(runner: StepRunner, model: Any, batch: int, steps: int) -> float:
    """Seconds per sample step: ``steps`` steps (after 5 to warm up), each drawing the next level from the logits as
    the sampler does."""
    labels = labels_of(model, batch)
    runner.reset(None if labels is None else np.array(labels), batch)
    rng = np.random.default_rng(0)
    levels = np.full(batch, SILENCE, dtype=np.int64)
    for _ in range(5):
        levels = draw(runner.advance(levels), 1.0, rng.random(batch))
    started = time.perf_counter()
    for _ in range(steps):
        levels = draw(runner.advance(levels), 1.0, rng.random(batch))
    return (time.perf_counter() - started) / steps


def same_clips(runners: dict[str, StepRunner], model: Any, seconds: float) -> dict[str, bool]:
    """Whether each runner makes the first one's clip (batch 1, seed 0) through the plugin's sampling loop."""
    facts = model.manifest.facts
    settings = AudioSampling(n=1, seed=0, seconds=seconds, labels=labels_of(model, 1))
    made = {
        name: generate_clips(runner, settings, ClipFormat.of(facts), generator=model.manifest.generator).array
        for name, runner in runners.items()
    }
    first = next(iter(made.values()))
    return {name: bool(np.array_equal(first, clip)) for name, clip in made.items()}


def state_passing_floor(session: Any, batch: int, steps: int = 2000) -> float:
    """Seconds per ``run`` of a graph with the step graph's inputs and outputs that computes nothing (each output an
    Identity of an input): what one run with this many state tensors costs before any arithmetic."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inputs = session.get_inputs()
    kinds = {"tensor(int64)": TensorProto.INT64, "tensor(float)": TensorProto.FLOAT}
    graph_inputs = [helper.make_tensor_value_info(i.name, kinds[i.type], ["batch", *i.shape[1:]]) for i in inputs]
    queues = [i for i in inputs if i.name.startswith("queue.")]
    nodes = [helper.make_node("Identity", [q.name], [f"next_{q.name}"]) for q in queues]
    nodes.append(helper.make_node("Identity", [queues[0].name], ["logits"]))
    outputs = [helper.make_tensor_value_info(f"next_{q.name}", TensorProto.FLOAT, None) for q in queues]
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))
    model = helper.make_model(
        helper.make_graph(nodes, "floor", graph_inputs, outputs),
        opset_imports=[helper.make_opsetid("", 20)],
        ir_version=10,
    )
    floor = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([batch, *i.shape[1:]], dtype=np.int64 if i.type == "tensor(int64)" else np.float32)
        for i in inputs
    }
    names = [o.name for o in session.get_outputs()]
    for _ in range(100):
        floor.run(names, feeds)
    started = time.perf_counter()
    for _ in range(steps):
        result = floor.run(names, feeds)
        feeds.update(zip([q.name for q in queues], result[1:], strict=True))
    return (time.perf_counter() - started) / steps


def speed_row(path: str, batch: int, per_step: float, naive: float) -> dict[str, Any]:
    return {
        "path": path,
        "batch": batch,
        "seconds_per_step": per_step,
        "samples_per_second_per_stream": 1 / per_step,
        "samples_per_second": batch / per_step,
        "realtime_factor_16khz": per_step * REAL_TIME_RATE,
        "x_naive": naive / per_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--export", type=Path)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps of the cached paths")
    parser.add_argument("--naive-steps", type=int, default=100, help="timed steps of the naive path")
    parser.add_argument("--check-seconds", type=float, default=0.01, help="length of the clip the paths must agree on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trained = genloom.load(args.model)
    with tempfile.TemporaryDirectory() as scratch:
        export = args.export or Path(scratch) / "export"
        if args.export is None:
            subprocess.run(
                [sys.executable, "-m", "genloom", "export", str(args.model), "--out", str(export)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        exported = genloom.load(export)
        net = trained.generator.net
        paths = {
            "naive torch": (lambda: NaiveStepRunner(net), trained, args.naive_steps),
            "cached torch": (lambda: TorchStepRunner(net), trained, args.steps),
            "onnxruntime": (lambda: exported.runner, exported, args.steps),
        }
        agreement = same_clips({name: make() for name, (make, _, _) in paths.items()}, trained, args.check_seconds)
        if not agreement["cached torch"]:
            raise SystemExit("the naive and cached paths made different clips: the benchmark is void")
        rows = []
        for batch in [int(b) for b in args.batches.split(",")]:
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.repeats):
                for name, (make, path_model, steps) in paths.items():
                    times[name].append(timed(make(), path_model, batch, steps))
            naive = statistics.median(times["naive torch"])
            for name in paths:
                per_step = statistics.median(times[name])
                rows.append(speed_row(name, batch, per_step, naive))
                print(f"{name} batch {batch}: {batch / per_step:,.0f} samples/s", file=sys.stderr)
            floor = state_passing_floor(exported.onnx, batch)
            rows.append(speed_row(FLOOR_PATH, batch, floor, naive))
        import onnx

        nodes = len(onnx.load(export / exported.export.graphs[0].file).graph.node)
    facts = trained.manifest.facts
    machine = {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()}
    print(
        f"WaveNet: {len(trained.generator.config.dilations)} layers, receptive field {facts['receptive_field']}, "
        f"residual {trained.generator.config.residual_channels} channels; step graph of {nodes} nodes; "
        f"{machine['platform']}"
    )
    print("| path | batch | samples/s per stream | samples/s in all | real-time factor at 16 kHz | x naive |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['path']} | {row['batch']} | {row['samples_per_second_per_stream']:,.0f} | "
            f"{row['samples_per_second']:,.0f} | {row['realtime_factor_16khz']:.2f} | {row['x_naive']:.1f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "facts": facts,
                    "step_graph_nodes": nodes,
                    "same_clip_as_naive": agreement,
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
