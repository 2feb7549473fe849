"""``genloom train ... --nproc N``: the same command in N processes on this machine, started by torchrun.

:func:`run_torchrun` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m genloom train ...``
with the user's other options, passes its output through, and turns a failed run into one message: which
rank stopped and how, and the checkpoint to continue from with ``--resume``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from genloom.checkpoint import CHECKPOINT_FILE, load_checkpoint
from genloom.errors import ArtifactError

EXIT_BAD_INPUT = 2
"""What a rank exits with after printing a user error (the CLI's code); torchrun's own message is then noise."""


@dataclass(frozen=True)
class RunFailure:
    """The first failure torchrun observed: the rank and its exit code (minus a signal's number)."""

    rank: int
    exit_code: int

    def describe(self) -> str:
        """``rank 1 was killed by SIGKILL`` or ``rank 1 exited with code 1``."""
        if self.exit_code < 0:
            try:
                how = f"was killed by {signal.Signals(-self.exit_code).name}"
            except ValueError:
                how = f"was killed by signal {-self.exit_code}"
        else:
            how = f"exited with code {self.exit_code}"
        return f"rank {self.rank} {how}"


def torchrun_command(nproc: int, module: str, args: list[str]) -> list[str]:
    """The command line that runs ``python -m MODULE ARGS`` in ``nproc`` processes on this machine under torchrun."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, "-m", module, *args]


def run_torchrun(nproc: int, train_args: list[str], out: Path) -> tuple[int, str | None]:
    """Run the training in ``nproc`` processes; return torchrun's exit code and, when it failed, what to tell
    the user (None when a rank has already printed a user error)."""
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = torchrun_command(nproc, "genloom", ["train", *train_args])
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=environment)
    captured: list[bytes] = []
    relay = threading.Thread(target=_relay, args=(process.stderr, captured), daemon=True)
    relay.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:  # torchrun passes Ctrl-C on to the ranks, which checkpoint and stop
        code = process.wait()
    relay.join(timeout=10)
    if code == 0:
        return 0, None
    return code, failure_message(nproc, code, b"".join(captured).decode("utf-8", "replace"), out)


def failure_message(nproc: int, code: int, torchrun_output: str, out: Path) -> str | None:
    """What to tell the user after torchrun exited with ``code``: which rank stopped and how, and the checkpoint to
    resume from; None when that rank stopped on a user error it printed itself."""
    failure = parse_failure(torchrun_output)
    if failure is not None and failure.exit_code == EXIT_BAD_INPUT:
        return None
    what = failure.describe() if failure is not None else f"torchrun exited with code {code}"
    return f"the {nproc}-process run stopped: {what}, so the others were stopped too; {_resume_hint(out)}"


def parse_failure(torchrun_output: str) -> RunFailure | None:
    """The root-cause rank and exit code of torchrun's failure report, if it printed one."""
    tail = torchrun_output[torchrun_output.rfind("Root Cause") :] if "Root Cause" in torchrun_output else ""
    rank = re.search(r"rank\s*:\s*(\d+)", tail)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", tail)
    if rank is None or exit_code is None:
        return None
    return RunFailure(int(rank.group(1)), int(exit_code.group(1)))


def _resume_hint(out: Path) -> str:
    try:
        step = load_checkpoint(out / CHECKPOINT_FILE).step
    except ArtifactError:
        return f"no checkpoint was written in '{out}'; start the run again"
    return f"the last checkpoint (step {step}) is in '{out}': continue with the same command and --resume"


def _relay(stream: IO[bytes] | None, captured: list[bytes]) -> None:
    """Copy torchrun's stderr to ours as it comes (progress bars included), keeping a copy."""
    if stream is None:
        return
    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        captured.append(chunk)
        binary = getattr(sys.stderr, "buffer", None)  # a text-only stderr (a notebook, a test's capture) has none
        if binary is not None:
            binary.write(chunk)
            binary.flush()
        else:
            sys.stderr.write(chunk.decode("utf-8", errors="replace"))
            sys.stderr.flush()
