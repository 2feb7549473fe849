"""Training samples/s of every built-in generator in 1 process and in N processes (DDP through torchrun).

    python benchmarks/distributed_training.py [--nproc 2] [--device auto] [--steps N] [--threads 1]
        [--generators gan,cgan,vae,cvae,gpt,lstm] [--out DIR]

Each run is ``genloom train NAME ... --nproc N`` in a fresh directory, as a user runs it, with each process
limited to ``--threads`` threads (``OMP_NUM_THREADS``), evaluation, samples and in-run checkpoints off, and the
generator's default model size. Every process takes ``batch_size`` examples a step, so N processes train on N
times the examples per step; samples/s is what the manifest records: examples over all processes divided by the
seconds of the training loop (start-up and the data set's loading are not in it). The ratio is N processes
against 1, measured in the same run; N is the ideal. Beside them, the machine's own limit: N one-process runs
at the same time, with no communication at all (their samples/s added up), which is what N cores give these
models without DDP's gradient all-reduce; and one process with N x ``--threads`` threads, the other way to use
the same cores. The default steps make each run's training loop last a few seconds
here. It prints the device and world size it ran with, so the same script reports a GPU machine's figures
(``--device cuda``: one GPU per process, nccl).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GENERATORS = ("gan", "cgan", "vae", "cvae", "gpt", "lstm")
DATA = {"gan": "digits", "cgan": "digits", "vae": "digits", "cvae": "digits", "gpt": "pydoc", "lstm": "pydoc"}
STEPS = {"gan": 400, "cgan": 400, "vae": 1500, "cvae": 1500, "gpt": 60, "lstm": 60}
"""Default steps of each generator's runs: a few seconds of training loop each on a 2-core CPU."""
QUIET = ("eval_every=0", "sample_every=0", "checkpoint_every=0", "early_stopping_patience=0")
TIMEOUT_S = 900


def command(name: str, nproc: int, device: str, steps: int, out: Path) -> list[str]:
    """``genloom train`` of ``name`` for ``steps`` in ``nproc`` processes into ``out``."""
    line = [sys.executable, "-m", "genloom", "train", name, "--data", DATA[name], "--out", str(out)]
    line += ["--steps", str(steps), "--device", device, "--quiet", "--nproc", str(nproc)]
    for setting in QUIET:
        line += ["--set", setting]
    return line


def train(runs: list[list[str]], threads: int) -> list[dict[str, object]]:
    """Run the ``genloom train`` command lines at the same time; each one's manifest training record."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = [
        subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        for run in runs
    ]
    records = []
    for run, process in zip(runs, started, strict=True):
        _, stderr = process.communicate(timeout=TIMEOUT_S)
        if process.returncode:
            raise SystemExit(f"{' '.join(run)} failed:\n{stderr[-3000:]}")
        out = Path(run[run.index("--out") + 1])
        records.append(json.loads((out / "manifest.json").read_text())["training"])
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="Processes of the distributed run (default 2).")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, help="Training steps of every run (default: per generator, see STEPS).")
    parser.add_argument("--threads", type=int, default=1, help="Threads per process (OMP_NUM_THREADS).")
    parser.add_argument("--generators", default=",".join(GENERATORS), help="Comma-separated generator names.")
    parser.add_argument("--out", type=Path, help="Keep the trained runs here (default: a temporary directory).")
    args = parser.parse_args()
    names = [name.strip() for name in args.generators.split(",") if name.strip()]
    unknown = sorted(set(names) - set(GENERATORS))
    if unknown or args.nproc < 2 or (args.steps is not None and args.steps < 1) or args.threads < 1:
        parser.error(
            f"--generators takes {', '.join(GENERATORS)} (got {', '.join(unknown)})"
            if unknown
            else "--nproc must be at least 2, --steps and --threads at least 1"
        )
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty; give a new directory")
    root = args.out or Path(tempfile.mkdtemp(prefix="genloom-ddp-bench-"))
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPU cores; {args.threads} thread(s) per process")
    print(
        f"{'generator':<10} {'device':<6} {'run':<22} {'world':>5} {'batch/proc':>10} {'samples/s':>11} "
        f"{'vs 1 process':>13}"
    )
    try:
        for name in names:
            steps, n = args.steps or STEPS[name], args.nproc
            (single,) = train([command(name, 1, args.device, steps, root / f"{name}-1")], args.threads)
            (ddp,) = train([command(name, n, args.device, steps, root / f"{name}-ddp")], args.threads)
            (threaded,) = train([command(name, 1, args.device, steps, root / f"{name}-threads")], args.threads * n)
            apart = train(
                [command(name, 1, args.device, steps, root / f"{name}-apart-{i}") for i in range(n)], args.threads
            )
            batch = json.loads((root / f"{name}-1" / "manifest.json").read_text())["config"]["batch_size"]
            one = float(str(single["samples_per_second"]))
            rows = [
                ("1 process", single["device"], 1, one),
                (
                    f"1 process, {args.threads * n} threads",
                    threaded["device"],
                    1,
                    float(str(threaded["samples_per_second"])),
                ),
                (f"DDP, {n} processes", ddp["device"], ddp["world_size"], float(str(ddp["samples_per_second"]))),
                (
                    f"{n} apart (machine limit)",
                    single["device"],
                    n,
                    sum(float(str(r["samples_per_second"])) for r in apart),
                ),
            ]
            for label, device, world, rate in rows:
                print(
                    f"{name:<10} {device!s:<6} {label:<22} {world!s:>5} {batch:>10} {rate:>11,.0f} {rate / one:>12.2f}x"
                )
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
