"""The export and runtime contracts: what a generator's export description holds, what an exporter and a
runtime driver receive and return, and the check that ties an export description to its driver.

A generator describes its export with an :class:`ExportSpec` (which torch modules become graphs, with example
inputs and names); an :class:`Exporter` turns a trained model directory into an export directory; a
:class:`RuntimeDriver` opens that directory, without torch, as a model with ``generate``. Each driver declares
the inputs and outputs it feeds and reads on the generating graph (the first one) and the ``driver_options`` it
needs; :func:`check_export_spec` refuses a description that lacks one, before anything is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from genloom.errors import PluginError

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from genloom.artifacts import Manifest
    from genloom.model import LoadedModel

Providers = Literal["auto", "cuda", "cpu"]
"""Where an export runs: ``cuda``, ``cpu``, or ``auto`` (CUDA when it works, else the CPU)."""

EXPORT_DIRECTORY = "export"
"""What an exporter ``produces`` when it writes a genloom export directory that ``genloom.load`` opens."""


@dataclass(frozen=True)
class GraphSpec:
    """One torch module to export as one graph."""

    name: str
    """The graph's name; its file is ``NAME.onnx``."""
    module: torch.nn.Module
    """The module whose ``forward(*example_inputs)`` the graph computes."""
    example_inputs: tuple[torch.Tensor, ...]
    """Tensors to trace with, one per input, batch >= 2 (a batch of 1 would be fixed into the graph)."""
    input_names: list[str]
    """One name per example input, in order: the names the runtime driver feeds."""
    output_names: list[str]
    """One name per output of ``forward``, in order: the names the runtime driver reads."""
    dynamic_axes: dict[str, dict[int, str]]
    """Input or output name -> {axis: symbolic name}: the axes that vary (the batch, at least)."""
    sample_inputs: Callable[[int, np.random.Generator], tuple[np.ndarray, ...]] | None = None
    """Fresh valid inputs at a given batch size for the parity check (token ids, masks, caches);
    by default floats are drawn at random and integer inputs as class labels."""
    build: Callable[[int], Any] | None = None
    """``build(opset)`` -> the graph as an ``onnx.ModelProto``, written by the plugin instead of traced (for
    operators torch.onnx cannot write, such as ONNX Runtime's fused attention); ``module`` stays the reference
    that the exporter's parity gate runs beside it."""


@dataclass(frozen=True)
class ExportSpec:
    """How a generator goes to ONNX: its graphs, the runtime driver that runs them, and what the driver needs."""

    driver: str
    """The registered runtime driver that opens the export (e.g. ``image-from-latent``)."""
    graphs: list[GraphSpec]
    """The graphs; the first is the one that generates."""
    driver_options: dict[str, Any] = field(default_factory=dict)
    """JSON-able settings for the driver (e.g. context length, cache layout); stored in the export's manifest."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Files to write beside the graphs, listed and hashed like them (e.g. another runtime's configuration)."""
    portable: ExportSpec | None = None
    """The same model in standard ONNX operators only, for runtimes without ONNX Runtime's contrib operators
    (``genloom export --option portable=true``); None when this description is portable already."""


@runtime_checkable
class RuntimeDriver(Protocol):
    """Opens one kind of export (the ``driver`` its manifest names) as a model with ``generate``, without torch."""

    @property
    def name(self) -> str:
        """Unique name; an export description's ``driver`` and an export manifest's ``export.driver`` name it."""

    @property
    def kind(self) -> str:
        """The data kind it generates (``image``, ``text``, ...): a generator of another kind cannot use it."""

    @property
    def description(self) -> str:
        """One line for ``genloom plugins``."""

    @property
    def inputs(self) -> Sequence[str]:
        """Inputs of the generating (first) graph that the driver feeds; the export description must name each."""

    @property
    def outputs(self) -> Sequence[str]:
        """Outputs of the generating graph that the driver reads."""

    @property
    def options(self) -> Sequence[str]:
        """Keys of ``driver_options`` that the driver reads."""

    def open(
        self,
        directory: Path,
        manifest: Manifest,
        providers: Providers,
        session_options: onnxruntime.SessionOptions | None,
        precision: str,
    ) -> LoadedModel:
        """Open the checked export in ``directory`` (its :class:`genloom.artifacts.Manifest` already read and every
        hash verified) on ``providers`` (``auto``, ``cuda`` or ``cpu``) in ``precision`` (``fp32`` or a variant the
        export has);
        return a :class:`genloom.model.LoadedModel` with ``generate(**settings)`` returning the kind's result."""


@runtime_checkable
class OffersBenchmarkPeer(Protocol):
    """Optional, on a runtime driver: what a user would run instead of genloom for this kind of export, so that
    ``genloom bench`` can time it beside genloom's paths in the same run (the text drivers offer ``transformers``)."""

    def benchmark_peer(self, model: LoadedModel, cuda: bool) -> object | None:
        """The peer for the opened export ``model`` (on CUDA when ``cuda``), in the form the kind's benchmark times
        (for text a :class:`genloom.bench.text.Decoder`); None when there is none. An ImportError when the peer's
        library is not installed."""


@runtime_checkable
class Exporter(Protocol):
    """Turns a trained model directory into something to deploy."""

    @property
    def name(self) -> str:
        """Unique name: ``genloom export --exporter NAME``."""

    @property
    def produces(self) -> str:
        """What it writes: :data:`EXPORT_DIRECTORY` for a genloom export that ``genloom.load`` opens (the one
        ``genloom export`` and ``genloom bench`` pick by default); another word for other targets."""

    @property
    def description(self) -> str:
        """One line for ``genloom plugins``."""

    @property
    def options(self) -> Sequence[str]:
        """Names of the keyword options ``export`` takes (for ``onnx``: ``opset``, ``fp16``, ``int8``)."""

    @property
    def export(self) -> Callable[..., Any]:
        """``export(model_dir, out_dir, **options)``, a method: export the trained model in ``model_dir`` into
        ``out_dir`` (new or empty) and return the written :class:`genloom.artifacts.Manifest` (an exporter that
        ``produces`` another target returns its own description, with the ``generator`` it exported). ``options``
        are the exporter's own keyword arguments (for ``onnx``: ``opset``, ``fp16``, ``int8``), so its signature is
        its own; an unknown one is a ConfigError. Check ``out_dir`` and the options before the long work starts."""


def check_export_spec(spec: ExportSpec, driver: RuntimeDriver, generator: str, kind: str) -> None:
    """A PluginError naming the graph and the input, output or option that ``spec`` lacks and ``driver`` needs."""
    where = f"the export description of '{generator}'"
    if driver.kind != kind:
        raise PluginError(
            f"{where} names the runtime driver '{driver.name}', which runs {driver.kind} exports, "
            f"but '{generator}' makes {kind}; name a driver of kind '{kind}'"
        )
    if not spec.graphs:
        raise PluginError(
            f"{where} has no graphs; the '{driver.name}' driver needs one with inputs {list(driver.inputs)}"
        )
    for each in spec.graphs:
        if len(each.example_inputs) != len(each.input_names):
            raise PluginError(
                f"{where}: graph '{each.name}' has {len(each.example_inputs)} example inputs but "
                f"{len(each.input_names)} input names; give one name per example input, in order"
            )
    graph = spec.graphs[0]
    for role, needed, have in (
        ("input", driver.inputs, graph.input_names),
        ("output", driver.outputs, graph.output_names),
    ):
        missing = [name for name in needed if name not in have]
        if missing:
            raise PluginError(
                f"{where}: graph '{graph.name}' has no {role} '{missing[0]}', which the '{driver.name}' driver "
                f"needs (it has {role}s {list(have)}); name the {role}s {list(needed)}"
            )
    missing_options = [name for name in driver.options if name not in spec.driver_options]
    if missing_options:
        raise PluginError(
            f"{where} lacks driver_options '{missing_options[0]}', which the '{driver.name}' driver reads; "
            f"give {list(driver.options)}"
        )
