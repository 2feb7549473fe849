"""The public API: three lines from a model directory to generated output.

This is the top layer: it asks the plugin registry for the generator class, the
kind of data and the runtime driver, and hands them down to the layers that
save, load and run models (which know no registry).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genloom.artifacts import UNREGISTERED, Manifest, TrainingSummary, load_generator, read_manifest, save_generator
from genloom.contracts import Providers
from genloom.errors import DataError, NotAvailableError
from genloom.generator import AnyGenerator
from genloom.install import require_training_install
from genloom.model import LoadedModel, TorchModel
from genloom.plugins import Registration, get_registry

if TYPE_CHECKING:
    import onnxruntime


def load(
    path: str | Path,
    *,
    providers: Providers = "auto",
    session_options: onnxruntime.SessionOptions | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Open a model directory (hashes and format checked) and return a model with ``generate``.

    A trained model runs in PyTorch; an ONNX export (``genloom export``) runs in ONNX
    Runtime without torch, on ``providers`` ``"auto"`` (CUDA when it works, else the
    CPU), ``"cuda"`` or ``"cpu"``, with optional ``onnxruntime.SessionOptions``, in
    ``precision`` ``"fp32"`` or a variant the export was made with (``"fp16"``, ``"int8"``).
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    if manifest.kind == "export":
        return open_export(directory, manifest, providers, session_options, precision)
    require_training_install(f"loading the trained torch model in '{directory}'")
    registry = get_registry()
    generator_cls = (
        registry.generator_of(manifest.plugin, manifest.generator)
        if manifest.plugin != UNREGISTERED
        else registry.generator(manifest.generator)
    ).value
    return TorchModel(
        load_generator(directory, generator_cls, manifest), manifest, directory, registry.kind(generator_cls.modality)
    )


def open_export(
    directory: Path,
    manifest: Manifest,
    providers: Providers = "auto",
    session_options: onnxruntime.SessionOptions | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Open an export whose manifest is read and checked, with the registered runtime driver it names."""
    assert manifest.export is not None
    driver = manifest.export.driver
    registry = get_registry()
    if driver not in registry.names("runtime driver"):
        known = ", ".join(registry.names("runtime driver")) or "none"
        raise NotAvailableError(
            f"'{directory}' needs the runtime driver '{driver}', which no installed plugin provides "
            f"(installed: {known}); install the plugin that made the export"
        )
    return registry.runtime_driver(driver).value.open(directory, manifest, providers, session_options, precision)


def save(generator: AnyGenerator, directory: str | Path, training: TrainingSummary | None = None) -> Manifest:
    """Save a built generator as an artifact directory, recorded as the plugin that registered its class
    (``unregistered`` for an app's own class), so that :func:`load` finds the same code again."""
    registration = get_registry().registration_of("generator", type(generator))
    plugin, version = (registration.plugin, registration.plugin_version) if registration else (UNREGISTERED, "")
    return save_generator(generator, Path(directory), plugin, version, training)


def train(
    generator: str,
    data: str,
    out: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
    device: str = "auto",
    **config: Any,
) -> Manifest:
    """Train the generator registered as ``generator`` on the ``data`` source into ``out``.

    Keyword arguments are config values, e.g. ``train("gan", "digits", "out", steps=500)``.
    ``init_from`` names a trained model of the same generator to start from (fine-tuning): its shape and weights
    carry over, and the config's training knobs are the run's (``train("gpt", "text:mine.txt", "out",
    init_from="runs/base", learning_rate=3e-4)``).
    A data source of another kind than the generator's is refused before any plugin code runs.
    Training steps run on ``device``: ``"auto"`` (CUDA where torch sees a GPU), ``"cpu"`` or ``"cuda"``.
    Run under ``torchrun``, every process calls this and they train one model together.
    """
    registration = _check_names(generator, data, out)  # the loop checks the config, once it has the checkpoint
    generator_cls = registration.value
    from genloom.training import train as run_training

    registry = get_registry()
    dataset = registry.open_data(data)
    return run_training(
        generator_cls,
        dataset,
        out,
        config,
        resume=resume,
        init_from=init_from,
        progress=progress,
        device=device,
        plugin=registration.plugin,
        plugin_version=registration.plugin_version,
        kind=registry.kind(generator_cls.modality),
    )


def check_training(
    generator: str,
    data: str,
    out: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    device: str = "auto",
    **config: Any,
) -> Registration[type[AnyGenerator]]:
    """Everything a run can be refused for before it starts (what ``genloom train --nproc`` checks before it
    starts processes): the generator and data source exist and match, ``out`` can take the run, the base (with
    ``init_from``) is a sound model of that generator, the device exists and the config is valid (on top of the
    checkpoint's, with ``resume``). Returns the registration."""
    registration = _check_names(generator, data, out)
    generator_cls = registration.value
    reads_out = _reads_out()
    from genloom.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from genloom.config import validate_model
    from genloom.finetune import base_values, open_base
    from genloom.precision import check_precision, resolve_device

    base = open_base(init_from, generator_cls, resume=resume)
    fixed = base_values(generator_cls, base, config) if base is not None else {}
    checkpoint = load_checkpoint(Path(out) / CHECKPOINT_FILE) if resume and reads_out else None
    # another generator's checkpoint: the training loop says so, rather than its config's fields
    saved = checkpoint.config if checkpoint is not None and checkpoint.generator == generator_cls.name else {}
    checked = validate_model(generator_cls.Config, {**saved, **config, **fixed}, what=f"config of '{generator}'")
    check_precision(checked.precision, resolve_device(device))
    return registration


def _check_names(generator: str, data: str, out: str | Path) -> Registration[type[AnyGenerator]]:
    """The generator and the data source exist and are of one kind, ``out`` can take a run (on the rank that
    writes it), and torch is installed; the generator's registration."""
    from genloom.fileio import check_output_directory

    if _reads_out():
        check_output_directory(Path(out), "--out", empty=False)  # before a data source is read
    registry = get_registry()
    registration = registry.generator(generator)
    generator_cls = registration.value
    source = registry.source_for(data)
    if source.modality != generator_cls.modality:
        raise DataError(
            f"--data {data}: generator '{generator}' trains on {generator_cls.modality} data, but the data source "
            f"'{source.name}' holds {source.modality}; pick a {generator_cls.modality} source (see `genloom plugins`)"
        )
    require_training_install(f"genloom train {generator}")
    return registration


def _reads_out() -> bool:
    """Whether this process reads and writes ``--out``: always, except on the other ranks under torchrun."""
    return os.environ.get("RANK", "0") == "0"
