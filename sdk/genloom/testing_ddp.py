"""The conformance kit's multi-process check: a generator trains in 2 processes under torchrun (gloo, CPU).

:func:`train_in_processes` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m
genloom.testing_ddp ...``; this module's ``__main__`` is the worker every rank runs. It trains the generator
class through the shared loop, as ``genloom train`` does, and records every rank's parameters after the last
step in ``ranks/rank-R.safetensors`` so the caller can check that DDP kept the ranks identical. A test can make
one rank kill itself at a step (``kill_rank``, ``kill_at``), once, to check what a dead rank does to a run.
:func:`check_distributed_training` is the check :func:`genloom.testing.check_generator` runs.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genloom.artifacts import UNREGISTERED, load_generator
from genloom.generator import AnyGenerator
from genloom.launch import torchrun_command
from genloom.plugins import get_registry, in_process_modules
from genloom.training import train

if TYPE_CHECKING:
    import torch

RANKS_DIR = "ranks"
KILLED_MARKER = "killed-once"
TIMEOUT_S = 240


@dataclass
class ProcessRun:
    """What a multi-process training run left: torchrun's exit code and output, and each rank's parameters."""

    returncode: int
    output: str
    out: Path

    def parameters(self, rank: int, *, before_training: bool = False) -> dict[str, torch.Tensor]:
        """``rank``'s parameters after the last step (or before the first), by name."""
        from safetensors.torch import load_file

        return load_file(str(self.out / RANKS_DIR / f"rank-{rank}{'-start' if before_training else ''}.safetensors"))


def class_path(generator_cls: type[AnyGenerator]) -> str:
    """``module:QualName`` of a generator class that a fresh process can import."""
    return f"{generator_cls.__module__}:{generator_cls.__qualname__}"


def train_in_processes(
    generator_cls: type[AnyGenerator],
    data: str,
    out: Path,
    config: dict[str, Any],
    *,
    nproc: int = 2,
    resume: bool = False,
    kill_rank: int | None = None,
    kill_at: int = 0,
    timeout: float = TIMEOUT_S,
    device: str = "cpu",
) -> ProcessRun:
    """Train ``generator_cls`` on ``data`` into ``out`` in ``nproc`` processes under torchrun (1 thread each), on
    ``device`` (gloo on the CPU, nccl on CUDA)."""
    job = {
        "generator": class_path(generator_cls),
        "data": data,
        "out": str(out),
        "config": config,
        "resume": resume,
        "kill_rank": kill_rank,
        "kill_at": kill_at,
        "device": device,
        "modules": in_process_modules(),
    }
    command = torchrun_command(nproc, "genloom.testing_ddp", [json.dumps(job)])
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=environment, start_new_session=True
    )
    return ProcessRun(finished.returncode, finished.stdout + finished.stderr, out)


def check_distributed_training(generator_cls: type[AnyGenerator], data: str, workdir: Path, **config: Any) -> None:
    """A 2-process gloo smoke train: it finishes, the ranks hold identical parameters, and the model it saved
    loads like a one-process one."""
    import torch

    out = workdir / f"ddp-{generator_cls.name}"
    run = train_in_processes(generator_cls, data, out, {"steps": 2, **config})
    assert run.returncode == 0, f"the 2-process training failed:\n{run.output[-3000:]}"
    first, second = run.parameters(0), run.parameters(1)
    assert first.keys() == second.keys() and first, "the ranks recorded different parameters"
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), f"after training, parameter '{name}' differs between the ranks"
    trained = load_generator(out, generator_cls)
    assert trained.facts, "the model saved by the 2-process run has no facts"


def _recording(generator_cls: type[AnyGenerator], out: Path, kill_rank: int | None, kill_at: int) -> type[Any]:
    """``generator_cls`` that records this rank's parameters after its last step (and may kill itself once)."""
    rank = int(os.environ.get("RANK", "0"))

    class Recording(generator_cls):  # type: ignore[valid-type,misc]
        def train_step(self, batch: Any, optimizers: dict[str, Any], step: int) -> dict[str, float]:
            marker = out / KILLED_MARKER
            if rank == kill_rank and step == kill_at and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            if step == 0:
                self._record(f"rank-{rank}-start")
            losses: dict[str, float] = super().train_step(batch, optimizers, step)
            if step + 1 == self.config.steps:
                self._record(f"rank-{rank}")
            return losses

        def _record(self, name: str) -> None:
            from safetensors.torch import save_file

            parameters = {  # a module without parameters (a fitted copula) is compared by its buffers
                f"{module_name}.{name}": parameter.detach().cpu().contiguous()
                for module_name, module in self.modules.items()
                for name, parameter in (list(module.named_parameters()) or list(module.named_buffers()))
            }
            (out / RANKS_DIR).mkdir(parents=True, exist_ok=True)
            save_file(parameters, str(out / RANKS_DIR / f"{name}.safetensors"))

    Recording.__name__ = Recording.__qualname__ = generator_cls.__name__
    return Recording


def _work(job: dict[str, Any]) -> None:
    """One rank of :func:`train_in_processes`."""
    import genloom.plugins

    for module in job["modules"]:
        genloom.plugins.register(importlib.import_module(module))
    module_name, _, qualname = job["generator"].partition(":")
    generator_cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        generator_cls = getattr(generator_cls, part)
    out = Path(job["out"])
    registry = get_registry()
    train(
        _recording(generator_cls, out, job["kill_rank"], job["kill_at"]),
        registry.open_data(job["data"]),
        out,
        job["config"],
        kind=registry.kind(generator_cls.modality),
        plugin=UNREGISTERED,
        resume=job["resume"],
        progress=False,
        device=job["device"],
    )


if __name__ == "__main__":
    _work(json.loads(sys.argv[1]))
