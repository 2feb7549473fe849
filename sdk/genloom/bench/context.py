"""What a kind's benchmark receives: the model's paths (PyTorch, each ONNX Runtime precision) and the run's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from genloom.bench.machine import Machine


class OnnxPath(NamedTuple):
    """One way the export runs: its row label, the loaded model, whether it runs on the CPU, and its graph file."""

    label: str
    model: Any
    on_cpu: bool
    graph_file: Path


@dataclass
class BenchContext:
    """One artifact being benchmarked; a kind's ``bench(context)`` turns it into rows."""

    name: str
    """The rows' model label: ``GENERATOR (DIRECTORY)``."""
    torch_model: Any
    """The trained model (:class:`genloom.model.TorchModel`) when benched from its directory; None for an export."""
    paths: list[OnnxPath]
    """The export's ONNX Runtime paths: fp32, then the int8 (CPU) and fp16 (CUDA) variants it has."""
    export_dir: Path
    driver: Any
    """The export's :class:`genloom.contracts.RuntimeDriver` (a kind's bench may ask it for a peer)."""
    machine: Machine
    repeats: int
    tokens: int
    """Text: tokens decoded per timed run."""
    batches: tuple[int, ...] | None
    """Batch sizes to time; None: the kind's own."""
    peer_unavailable: list[str] = field(default_factory=list)
    """Why the rows have no peer, one line per model: the kind's bench adds it."""

    @property
    def cuda(self) -> bool:
        """Whether the fp32 export runs on CUDA (then the peers run there too)."""
        return not self.paths[0].on_cpu
