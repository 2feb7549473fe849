"""Training in several processes: the process group that ``torchrun`` starts, seen from the shared training loop.

One process is a :class:`World` of size 1 whose methods do nothing, so the loop reads the
same either way. Under ``torchrun`` (``WORLD_SIZE`` > 1), :func:`join` joins the process
group (gloo on the CPU, nccl on CUDA) and the loop uses the world to:

- wrap each module with trainable parameters in its own DistributedDataParallel
  (:meth:`World.wrap`), so gradients are averaged over the ranks at every backward;
- agree on each step's losses and on a stop request (:meth:`World.mean`);
- let rank 0 alone read and write files, sharing what it read (:meth:`World.share_bytes`,
  :meth:`World.share_json`) and gathering what only the other ranks hold (:meth:`World.gather_json`,
  :meth:`World.gather_bytes`);
- average the modules' buffers (BatchNorm statistics) before a checkpoint (:meth:`World.average_buffers`).

Everything travels as JSON or raw bytes in tensors: no pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from genloom import errors
from genloom.errors import ConfigError, GenloomError

if TYPE_CHECKING:
    import torch

TIMEOUT_ENV = "GENLOOM_DIST_TIMEOUT"
"""Seconds a rank waits for the others at a collective before it gives up (default 300)."""
DEFAULT_TIMEOUT_S = 300.0
ResultT = TypeVar("ResultT")


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s batches and noise: the run's ``seed`` on rank 0 (one process is unchanged), and a
    seed derived from both for every other rank."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint32)[0])


@dataclass
class World:
    """The processes training one model together: ``size`` of them, this one being ``rank``."""

    device: torch.device
    """Where this rank trains; collectives' tensors live there too (nccl needs CUDA tensors)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    _group: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files."""
        return self.rank == 0

    def wrap(self, modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
        """Each module with trainable parameters in its own DistributedDataParallel; the others as they are.

        Buffers are not broadcast at each forward (``forward_sync_buffers=False``): a module run twice before one
        backward (a GAN's discriminator on real and fake) would otherwise fail, and :meth:`average_buffers`
        brings them together at checkpoints. Parameters that get no gradient in a step are allowed.
        """
        if not self._group:
            return dict(modules)
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device] if self.device.type == "cuda" else None
        # torch 2.13 renamed broadcast_buffers; older releases know only the old name
        renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        no_buffer_sync: dict[str, Any] = {"forward_sync_buffers": False} if renamed else {"broadcast_buffers": False}
        return {
            name: DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True, **no_buffer_sync)
            if any(parameter.requires_grad for parameter in module.parameters())
            else module
            for name, module in modules.items()
        }

    def mean(self, losses: Mapping[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """Every rank's ``losses`` averaged over the ranks, and whether any rank asked to stop: one all-reduce."""
        if not self._group:
            return dict(losses), stop
        import torch
        import torch.distributed as dist

        names = sorted(losses)
        values = torch.tensor([*(float(losses[name]) for name in names), float(stop)], dtype=torch.float64)
        values = values.to(self._comm_device)
        dist.all_reduce(values)
        totals = values.cpu().tolist()
        return {name: totals[i] / self.size for i, name in enumerate(names)}, totals[-1] > 0

    def on_main(self, action: Callable[[], ResultT]) -> ResultT | None:
        """Run ``action`` on rank 0 alone; a GenloomError it raises is raised on every rank (the others get None).

        For work whose result the others do not need, or share with :meth:`share_json` afterwards.
        """
        if not self._group:
            return action()
        outcome: dict[str, str] = {}
        result: ResultT | None = None
        if self.is_main:
            try:
                result = action()
            except GenloomError as exc:
                outcome = {"error": type(exc).__name__, "message": str(exc)}
                self.share_json(outcome)
                raise
        outcome = self.share_json(outcome)
        if "error" in outcome:
            error_class = getattr(errors, outcome["error"], GenloomError)
            error = error_class(outcome["message"])
            error.from_rank_0 = True
            raise error
        return result

    def from_main(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` on rank 0 alone (as :meth:`on_main`) and give every rank its JSON-able result."""
        return self.share_json(self.on_main(action))

    def share_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank (the others pass None)."""
        if not self._group:
            assert data is not None
            return data
        import torch
        import torch.distributed as dist

        size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=self._comm_device)
        dist.broadcast(size, src=0)
        if self.is_main:
            assert data is not None
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self._comm_device)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self._comm_device)
        if int(size.item()):
            dist.broadcast(buffer, src=0)
        return data if self.is_main and data is not None else bytes(buffer.cpu().numpy().tobytes())

    def share_json(self, value: Any) -> Any:
        """Rank 0's JSON-able ``value`` on every rank (what the others pass is ignored)."""
        if not self._group:
            return value
        sent = json.dumps(value).encode("utf-8") if self.is_main else None
        return json.loads(self.share_bytes(sent).decode("utf-8"))

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank."""
        if not self._group:
            return [data]
        import torch
        import torch.distributed as dist

        size = torch.tensor([len(data)], dtype=torch.int64, device=self._comm_device)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        dist.all_gather(sizes, size)
        longest = max(int(s.item()) for s in sizes)
        buffer = torch.zeros(longest, dtype=torch.uint8, device=self._comm_device)
        buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else buffer[:0]
        buffers = [torch.zeros_like(buffer) for _ in range(self.size)]
        dist.all_gather(buffers, buffer)
        return [bytes(b.cpu().numpy()[: int(s.item())].tobytes()) for b, s in zip(buffers, sizes, strict=True)]

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-able ``value``, in rank order, on every rank."""
        return [json.loads(data.decode("utf-8")) for data in self.gather_bytes(json.dumps(value).encode("utf-8"))]

    def average_buffers(self, modules: Mapping[str, torch.nn.Module]) -> None:
        """Make the modules' floating-point buffers (BatchNorm's running statistics) the mean over the ranks."""
        if not self._group:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for module in modules.values():
                for buffer in module.buffers():
                    if buffer.is_floating_point():
                        dist.all_reduce(buffer)
                        buffer.div_(self.size)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self._group:
            import torch.distributed as dist

            dist.barrier()

    def leave(self) -> None:
        """Leave the process group (at the end of the run, on every rank)."""
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False

    @property
    def _comm_device(self) -> torch.device | str:
        return self.device if self.device.type == "cuda" else "cpu"


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that ``torchrun`` started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> World:
    """The world of this process: one process, or the group ``torchrun`` started (joined here, with a timeout).

    A rank on CUDA takes the GPU of its local rank; a timeout that is not a positive number is a ConfigError.
    """
    import torch

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=device)
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=collective_timeout())
    )
    return World(device, rank=rank, size=size, local_rank=local_rank, _group=True)


def collective_timeout() -> float:
    """Seconds from ``GENLOOM_DIST_TIMEOUT`` (default 300); anything but a positive number is a ConfigError."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: give the seconds a rank waits for the others, e.g. 300")
    return seconds
