"""Starting a run from a trained model (``genloom train NAME --init-from BASE``): the base is read and checked, its
``fixed_fields`` become the new run's, and its weights go into the freshly built modules. What else carries over is
the generator's own business (:meth:`genloom.Generator.fit_data_from`: a text model keeps its tokenizer)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genloom.artifacts import MANIFEST_FILE, WEIGHTS_FILE, BaseRecord, artifact_id, read_manifest
from genloom.config import validate_model
from genloom.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    import torch

    from genloom.generator import AnyGenerator


@dataclass
class Base:
    """A trained model read for fine-tuning: its record, config, facts, extra files and weights."""

    record: BaseRecord
    config: dict[str, Any]
    facts: dict[str, Any]
    files: dict[str, bytes]
    tensors: dict[str, torch.Tensor]


def open_base(init_from: str | Path | None, generator_cls: type[AnyGenerator], *, resume: bool) -> Base | None:
    """The base of a new run (None without ``init_from``); a resumed run takes its base from its checkpoint."""
    if init_from is None:
        return None
    if resume:
        raise ConfigError(
            "--init-from with --resume: a fine-tune resumes with --resume alone (its checkpoint names its base); "
            "drop --init-from"
        )
    return read_base(init_from, generator_cls)


def read_base(path: str | Path, generator_cls: type[AnyGenerator]) -> Base:
    """The trained model in ``path`` (every file checked against its hash) as a base for ``generator_cls``; a
    one-line error for an export, a model of another generator or a damaged one."""
    from genloom import weights

    directory = Path(path)
    if not (directory / MANIFEST_FILE).is_file():
        raise ArtifactError(
            f"--init-from {path}: not a genloom model (no {MANIFEST_FILE}); give a trained model's --out"
        )
    manifest = read_manifest(directory)
    if manifest.kind != "model":
        raise ArtifactError(
            f"--init-from {path}: this is an ONNX export, which holds no trainable weights; give the trained model it "
            "was exported from"
        )
    if manifest.generator != generator_cls.name:
        raise ConfigError(
            f"--init-from {path}: the base is a '{manifest.generator}' model, not '{generator_cls.name}'; fine-tune "
            f"it with `genloom train {manifest.generator} --init-from {path}`, or give a '{generator_cls.name}' base"
        )
    weights_path = directory / WEIGHTS_FILE
    tensors = weights.from_bytes(weights_path.read_bytes(), str(weights_path))
    files = {name: (directory / name).read_bytes() for name in manifest.files if name != WEIGHTS_FILE}
    training = manifest.training
    record = BaseRecord(
        path=str(path),
        generator=manifest.generator,
        artifact_sha256=artifact_id(directory),
        data=training.data if training is not None else None,
        base=training.base if training is not None else None,
    )
    return Base(record, dict(manifest.config), dict(manifest.facts), files, tensors)


def base_values(generator_cls: type[AnyGenerator], base: Base, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The base's ``fixed_fields`` (as the base's config has them); an override that contradicts one is a
    ConfigError naming the field and the base's value."""
    saved = validate_model(generator_cls.Config, base.config, what=f"the config of the base '{base.record.path}'")
    fixed = {field: getattr(saved, field) for field in generator_cls.fixed_fields}
    if overrides:
        wanted = validate_model(
            generator_cls.Config, {**base.config, **overrides}, what=f"config of '{generator_cls.name}'"
        )
        for field, value in fixed.items():
            if field in overrides and getattr(wanted, field) != value:
                raise ConfigError(
                    f"--set {field}={json.dumps(overrides[field])}: the base '{base.record.path}' has {field}="
                    f"{json.dumps(value)}, which fixes the model's shape; drop --set {field}, or train from scratch "
                    "(without --init-from)"
                )
    return fixed


def load_base_weights(generator: AnyGenerator, base: Base) -> None:
    """The base's weights into ``generator``'s freshly built modules: every tensor they hold but its
    ``added_tensors`` must be in the base with the same shape (a one-line error naming the first that is not)."""
    from genloom import weights

    built = weights.module_tensors(generator.modules)
    added = generator.added_tensors()
    for name, tensor in built.items():
        if name in added:
            continue
        held = base.tensors.get(name)
        if held is None:
            raise ConfigError(
                f"--init-from {base.record.path}: the base has no '{name}'; the model this data and config make has "
                "parts the base lacks: fine-tune with the base's settings"
            )
        if tuple(held.shape) != tuple(tensor.shape):
            raise ConfigError(
                f"--init-from {base.record.path}: '{name}' is {tuple(held.shape)} in the base, but this data makes it "
                f"{tuple(tensor.shape)}; fine-tune on data of the base's shape (its image size, classes, columns)"
            )
    starting = {name: built[name] if name in added else base.tensors[name] for name in built}
    weights.load_module_tensors(generator.modules, starting, str(base.record.path))
