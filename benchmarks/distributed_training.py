"""Training samples/s of every built-in generator in 1 process and in N processes (DDP through torchrun).

    python benchmarks/distributed_training.py [--nproc 2] [--device auto] [--steps 60] [--threads 1]
        [--generators gan,cgan,vae,cvae,gpt,lstm] [--out DIR]

Each run is ``genloom train NAME ... --nproc N`` in a fresh directory, as a user runs it, with each process
limited to ``--threads`` threads (``OMP_NUM_THREADS``), evaluation, samples and in-run checkpoints off, and the
generator's default model size. Every process takes ``batch_size`` examples a step, so N processes train on N
times the examples per step; samples/s is what the manifest records: examples over all processes divided by the
seconds of the training loop (start-up and the data set's loading are not in it). The ratio is N processes
against 1, measured in the same run; N is the ideal. It prints the device and world size it ran with, so the
same script reports a GPU machine's figures (``--device cuda``: one GPU per process, nccl).
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
QUIET = ("eval_every=0", "sample_every=0", "checkpoint_every=0", "early_stopping_patience=0")
TIMEOUT_S = 900


def train(name: str, nproc: int, device: str, steps: int, threads: int, out: Path) -> dict[str, object]:
    """Train ``name`` for ``steps`` in ``nproc`` processes into ``out``; the manifest's training record."""
    command = [sys.executable, "-m", "genloom", "train", name, "--data", DATA[name], "--out", str(out)]
    command += ["--steps", str(steps), "--device", device, "--quiet", "--nproc", str(nproc)]
    for setting in QUIET:
        command += ["--set", setting]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=TIMEOUT_S)
    if finished.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    training: dict[str, object] = json.loads((out / "manifest.json").read_text())["training"]
    return training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="Processes of the distributed run (default 2).")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--steps", type=int, default=60, help="Training steps of every run.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per process (OMP_NUM_THREADS).")
    parser.add_argument("--generators", default=",".join(GENERATORS), help="Comma-separated generator names.")
    parser.add_argument("--out", type=Path, help="Keep the trained runs here (default: a temporary directory).")
    args = parser.parse_args()
    names = [name.strip() for name in args.generators.split(",") if name.strip()]
    unknown = sorted(set(names) - set(GENERATORS))
    if unknown or args.nproc < 2 or args.steps < 1 or args.threads < 1:
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
    print(f"{'generator':<10} {'device':<6} {'world':>5} {'batch/proc':>10} {'samples/s':>11} {'vs 1 process':>13}")
    try:
        for name in names:
            single = train(name, 1, args.device, args.steps, args.threads, root / f"{name}-1")
            several = train(name, args.nproc, args.device, args.steps, args.threads, root / f"{name}-{args.nproc}")
            batch = json.loads((root / f"{name}-1" / "manifest.json").read_text())["config"]["batch_size"]
            for record in (single, several):
                ratio = float(str(record["samples_per_second"])) / float(str(single["samples_per_second"]))
                print(
                    f"{name:<10} {record['device']!s:<6} {record['world_size']!s:>5} {batch:>10} "
                    f"{float(str(record['samples_per_second'])):>11,.0f} {ratio:>12.2f}x"
                )
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
