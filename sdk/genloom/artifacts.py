"""Model directories: ``manifest.json`` + ``model.safetensors`` + extra files, hash-checked.

Every file is written atomically and its sha256 recorded in the manifest, which is
written last, so a directory with a manifest is complete. Loading checks the
format version and every hash before anything is used; for an export, also its
``export`` section, and that every file it names is one of the hashed files.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genloom.config import StrictModel, describe_validation_error, validate_model
from genloom.errors import ArtifactError
from genloom.fileio import atomic_write_bytes, atomic_write_text, sha256_file

if TYPE_CHECKING:
    from genloom.generator import AnyGenerator

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
UNFINISHED_MARKER = ".unfinished"
"""A file in a directory still being written and checked (an exporter's staging directory): loaders refuse it."""
UNREGISTERED = "unregistered"
"""The ``plugin`` of a model saved from a generator class no plugin registered (an app's own, say)."""


class FileRecord(StrictModel):
    """One file of an artifact and the hash it must have."""

    sha256: str = Field(description="Hex sha256 of the file's bytes.")
    size: int = Field(ge=0, description="Size in bytes.")


class BaseRecord(StrictModel):
    """The model a run started from, as its checkpoints and manifest record it."""

    path: str = Field(description="The --init-from directory as given.")
    generator: str = Field(description="The base's generator.")
    artifact_sha256: str = Field(description="sha256 of the base's manifest.json, which pins every file of it.")
    data: str | None = Field(None, description="The data source the base trained on (None: imported weights).")
    base: BaseRecord | None = Field(None, description="The base's own base, when it was a fine-tune too.")


class TrainingSummary(StrictModel):
    """How a model was trained, as recorded in its manifest."""

    data: str = Field(description="The --data source it trained on.")
    steps: int = Field(ge=0, description="Optimisation steps taken.")
    seconds: float = Field(ge=0, description="Wall-clock training time, resumed runs added up.")
    final_metrics: dict[str, float] = Field(
        default_factory=dict, description="Last logged losses and evaluation figures."
    )
    resumed: int = Field(0, ge=0, description="How many times the run was resumed from a checkpoint.")
    world_size: int = Field(1, ge=1, description="Processes that trained it together (torchrun's world size).")
    device: str = Field("cpu", description="The device type its training steps ran on: cpu or cuda.")
    precision: str = Field("fp32", description="The arithmetic of its training steps: fp32, bf16 or fp16.")
    samples_per_second: float | None = Field(
        None, ge=0, description="Training examples per second over all processes, in the run's last (resumed) part."
    )
    base: BaseRecord | None = Field(None, description="The trained model the run started from (--init-from).")


class GraphRecord(StrictModel):
    """One ONNX graph of an export, as its manifest records it."""

    name: str = Field(min_length=1, description="The graph's name in the generator's export description.")
    file: str = Field(description="Its fp32 ONNX file: a plain name among the manifest's files.")
    inputs: list[str] = Field(description="Input names, in order.")
    outputs: list[str] = Field(description="Output names, in order.")
    variants: dict[str, str] = Field(
        default_factory=dict, description="Precision (fp16, int8) -> its ONNX file, among the files."
    )
    exporter: Literal["torch.export", "torchscript", "plugin"] | None = Field(
        None,
        description="Which torch exporter wrote it, or 'plugin' for a graph the plugin wrote itself "
        "(absent in exports made before genloom recorded it).",
    )
    fallback_reason: str | None = Field(
        None, description="Why the torch.export-based exporter could not, when TorchScript wrote it."
    )


class VariantFigures(StrictModel):
    """The measured error of one precision's variants."""

    max_abs_diff: dict[str, float] = Field(description="Graph -> largest |ONNX Runtime - PyTorch| on random inputs.")
    validation_perplexity: float | None = Field(None, description="Text: validation perplexity in this precision.")
    validation_perplexity_fp32: float | None = Field(None, description="Text: the same in fp32, for comparison.")
    agreement_with_fp32: float | None = Field(
        None,
        description="Share of the kind's variant checks whose results equal fp32's (text: prompts whose greedy "
        "tokens are all the same).",
    )


class ExportSection(StrictModel):
    """The ``export`` section of an export's manifest: what the runtime driver opens, and the measured parity."""

    driver: str = Field(min_length=1, description="Registered runtime driver that opens the export.")
    driver_options: dict[str, Any] = Field(
        default_factory=dict, description="The driver's settings (tokenizer file, cache layout, ...)."
    )
    opset: int = Field(ge=1, description="ONNX opset of the graphs.")
    graphs: list[GraphRecord] = Field(min_length=1, description="The graphs; the first is the one that generates.")
    parity_max_abs_diff: dict[str, float] = Field(description="Graph -> largest |ONNX Runtime - PyTorch| (fp32).")
    tolerance: float = Field(gt=0, description="The parity gate's tolerance.")
    precision: str = Field("fp32", description="Precision of the graphs named by 'file'.")
    source_sha256: str = Field(description="artifact_sha256 of the torch model it was exported from.")
    variants: dict[str, VariantFigures] = Field(
        default_factory=dict, description="Precision -> measured error of its variants."
    )


class Manifest(BaseModel):
    """What an artifact directory holds; ``manifest.json`` is this model as JSON."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(description="Artifact format; loaders refuse a newer one than they know.")
    kind: Literal["model", "export"] = Field("model", description="A torch model, or an ONNX export of one.")
    generator: str = Field(description="Registered name of the generator.")
    plugin: str = Field(description="Plugin that registered the generator.")
    plugin_version: str = Field(description="Version of that plugin's distribution.")
    genloom_version: str = Field(description="genloom version that wrote the artifact.")
    modality: str = Field(description="The kind of data it makes (image, text, or a plugin's own kind).")
    config: dict[str, Any] = Field(description="The generator's validated config.")
    facts: dict[str, Any] = Field(description="What the generator learned from its data (shapes, classes, ...).")
    files: dict[str, FileRecord] = Field(description="Every file of the artifact with its sha256.")
    training: TrainingSummary | None = Field(None, description="How the model was trained.")
    export: ExportSection | None = Field(
        None, description="ONNX exports: runtime driver, graphs, opset, measured parity."
    )
    created_at: str = Field(description="UTC time of writing, ISO 8601.")


def write_artifact(directory: Path, files: dict[str, bytes], **fields: Any) -> Manifest:
    """Write ``files`` then ``manifest.json`` (from ``fields``) into ``directory``, each atomically."""
    from genloom.version import __version__

    records = {}
    for name, data in files.items():
        _check_file_name(name)
        atomic_write_bytes(directory / name, data)
        records[name] = FileRecord(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        genloom_version=__version__,
        files=records,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    )
    atomic_write_text(directory / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")
    return manifest


def read_manifest(directory: Path, verify: bool = True, *, unfinished: bool = False) -> Manifest:
    """Read and check ``directory/manifest.json``; with ``verify``, check every file's hash too.

    A directory still being written (it holds :data:`UNFINISHED_MARKER`) is refused
    unless ``unfinished``: only the exporter reads its own staging directory.
    """
    path = Path(directory) / MANIFEST_FILE
    if not unfinished and (Path(directory) / UNFINISHED_MARKER).exists():
        raise ArtifactError(
            f"'{directory}' is an unfinished export (the export stopped before its end-to-end check); "
            "delete it and export again"
        )
    if not path.is_file():
        raise ArtifactError(
            f"'{directory}' is not a genloom model: it has no {MANIFEST_FILE} (train or export into it first)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the model directory is damaged") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if type(version) is not int or version < 1:  # bool is an int subclass: true is not a version
        raise ArtifactError(
            f"{path}: format_version is {json.dumps(version)}, not a version genloom writes (1 to {FORMAT_VERSION}); "
            "the model directory is damaged or not genloom's: re-train or re-export it"
        )
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format version {version}, newer than this genloom reads (up to {FORMAT_VERSION}); upgrade "
            "genloom"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        export_only = any(error["loc"][:1] == ("export",) for error in exc.errors())
        fix = "; re-export the model" if export_only else ""
        raise ArtifactError(describe_validation_error(exc, Manifest, what=str(path)) + fix) from None
    _check_kind(manifest, path)
    if manifest.export is not None:
        _check_export_section(manifest, path)
    if verify:
        for name, record in manifest.files.items():
            _check_file_name(name)
            file = Path(directory) / name
            if not file.is_file():
                raise ArtifactError(f"{file} is missing (listed in {MANIFEST_FILE}); copy the whole model directory")
            if sha256_file(file) != record.sha256:
                raise ArtifactError(
                    f"{file} is corrupted: its sha256 does not match {MANIFEST_FILE}; re-train or re-copy it"
                )
    return manifest


def artifact_id(directory: Path) -> str:
    """The sha256 of ``manifest.json``, which pins every file through their hashes."""
    return sha256_file(Path(directory) / MANIFEST_FILE)


def save_generator(
    generator: AnyGenerator, directory: Path, plugin: str, plugin_version: str, training: TrainingSummary | None = None
) -> Manifest:
    """Save a built generator's weights, extra files and manifest into ``directory``, as registered by ``plugin``
    (:data:`UNREGISTERED` for a class no plugin registered) at ``plugin_version``."""
    from genloom import weights

    files = {WEIGHTS_FILE: weights.to_bytes(weights.module_tensors(generator.modules)), **generator.extra_files()}
    return write_artifact(
        directory,
        files,
        generator=generator.name,
        plugin=plugin,
        plugin_version=plugin_version,
        modality=generator.modality,
        config=generator.config.model_dump(mode="json"),
        facts=generator.facts,
        training=training,
    )


def load_generator(
    directory: Path, generator_cls: type[AnyGenerator], manifest: Manifest | None = None
) -> AnyGenerator:
    """Rebuild the generator saved in ``directory`` as an instance of ``generator_cls`` (the class the caller found for
    ``manifest.plugin`` and ``manifest.generator``), weights loaded, in eval mode."""
    from genloom import weights

    manifest = manifest or read_manifest(directory)
    if manifest.kind != "model":
        raise ArtifactError(f"'{directory}' is an ONNX export; load it with genloom.load(), not as a torch generator")
    if generator_cls.name != manifest.generator:
        raise ArtifactError(f"'{directory}' holds a '{manifest.generator}' model, not a '{generator_cls.name}' one")
    config = validate_model(generator_cls.Config, manifest.config, what=f"config in {directory / MANIFEST_FILE}")
    generator = generator_cls(config)
    extra = {name: (Path(directory) / name).read_bytes() for name in manifest.files if name != WEIGHTS_FILE}
    generator.restore(manifest.facts, extra)
    generator.modules = generator.build()
    weights_path = Path(directory) / WEIGHTS_FILE
    weights.load_module_tensors(
        generator.modules, weights.from_bytes(weights_path.read_bytes(), str(weights_path)), str(weights_path)
    )
    for module in generator.modules.values():
        module.eval()
    return generator


def _check_kind(manifest: Manifest, path: Path) -> None:
    """An export has an export section and a torch model has none; anything else is a damaged manifest."""
    if manifest.kind == "export" and manifest.export is None:
        raise ArtifactError(
            f"{path} is inconsistent: kind is 'export' but it has no 'export' section (driver, graphs); "
            "if it is a trained torch model, set kind to 'model', else re-export it"
        )
    if manifest.kind == "model" and manifest.export is not None:
        raise ArtifactError(
            f"{path} is inconsistent: kind is 'model' but it has an 'export' section; "
            "an ONNX export has kind 'export': re-train or re-export it"
        )


def _check_export_section(manifest: Manifest, path: Path) -> None:
    """Every file the (validated) export section names is a plain name among the hashed ``files``."""
    section = manifest.export
    assert section is not None
    named = [(f"export.graphs[{i}].file", graph.file) for i, graph in enumerate(section.graphs)]
    named += [
        (f"export.graphs[{i}].variants.{precision}", file)
        for i, graph in enumerate(section.graphs)
        for precision, file in graph.variants.items()
    ]
    for field, name in named:
        check_listed_file(manifest, name, field, path)


def check_listed_file(manifest: Manifest, name: object, field: str, path: Path) -> str:
    """``name`` once checked: an ArtifactError unless ``name`` (read from ``field`` of the manifest at ``path``) is a
    plain file name among the files the manifest lists and hashes: a loader opens nothing else."""
    if not isinstance(name, str) or not _is_plain_name(name):
        raise ArtifactError(
            f"{path}: {field} is {name!r}, not a plain file name inside the model directory; "
            "an export opens only its own files: re-export it"
        )
    if name not in manifest.files:
        raise ArtifactError(
            f"{path}: {field} names {name!r}, which is not among the files the manifest lists and hashes; "
            "copy the whole export or re-export it"
        )
    return name


def _is_plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and name != MANIFEST_FILE


def _check_file_name(name: str) -> None:
    if not _is_plain_name(name):
        raise ArtifactError(f"artifact file name {name!r} is not allowed; use a plain name like 'tokenizer.json'")
