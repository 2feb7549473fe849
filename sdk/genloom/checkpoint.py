"""Resumable training checkpoints: one safetensors file, replaced atomically.

The file holds the model's tensors (``model/...``), each optimizer's tensors
(``optim/NAME/PARAM/KEY``) and torch's RNG state (``rng/torch``); everything else
(step, config, facts, extra files, optimizer hyper-parameters, the numpy batch
RNG) is JSON in the file's metadata. No pickle.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genloom import weights
from genloom.errors import ArtifactError
from genloom.fileio import atomic_write_bytes

if TYPE_CHECKING:
    import torch

    from genloom.generator import Generator

CHECKPOINT_FILE = "checkpoint.safetensors"
METADATA_KEY = "genloom_checkpoint"
MODEL_PREFIX = "model/"


@dataclass
class Checkpoint:
    """A training run frozen after ``step`` steps."""

    step: int
    data: str
    seconds: float
    resumed: int
    config: dict[str, Any]
    facts: dict[str, Any]
    files: dict[str, bytes]
    optimizers: dict[str, Any]
    numpy_rng: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def restore(self, generator: Generator, optimizers: dict[str, torch.optim.Optimizer], rng: np.random.Generator, where: Path) -> None:
        """Put the saved weights, optimizer state and RNG states back into a freshly built run."""
        import torch

        weights.load_module_tensors(generator.modules, self.tensors, str(where), prefix=MODEL_PREFIX)
        if set(optimizers) != set(self.optimizers):
            raise ArtifactError(f"{where} has optimizers {sorted(self.optimizers)}, this run has {sorted(optimizers)}")
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(_optimizer_state(self.optimizers[name], self.tensors))
        torch.set_rng_state(self.tensors["rng/torch"])
        rng.bit_generator.state = self.numpy_rng


def save_checkpoint(
    path: Path,
    generator: Generator,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: np.random.Generator,
    *,
    step: int,
    data: str,
    seconds: float,
    resumed: int,
) -> None:
    """Freeze the run in ``path`` atomically; a crash mid-write leaves the previous checkpoint."""
    import torch

    tensors = weights.module_tensors(generator.modules, prefix=MODEL_PREFIX)
    tensors["rng/torch"] = torch.get_rng_state()
    optimizer_json = {}
    for name, optimizer in optimizers.items():
        optimizer_json[name] = _split_optimizer_state(name, optimizer.state_dict(), tensors)
    state = {
        "step": step,
        "data": data,
        "seconds": seconds,
        "resumed": resumed,
        "config": generator.config.model_dump(mode="json"),
        "facts": generator.facts,
        "files": {k: base64.b64encode(v).decode("ascii") for k, v in generator.extra_files().items()},
        "optimizers": optimizer_json,
        "numpy_rng": rng.bit_generator.state,
    }
    atomic_write_bytes(path, weights.to_bytes(tensors, {METADATA_KEY: json.dumps(state)}))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    if not path.is_file():
        raise ArtifactError(f"no checkpoint at {path}; start the run without --resume")
    data = path.read_bytes()
    tensors = weights.from_bytes(data, str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if METADATA_KEY not in metadata:
        raise ArtifactError(f"{path} is not a genloom checkpoint (no '{METADATA_KEY}' metadata)")
    state = json.loads(metadata[METADATA_KEY])
    state["files"] = {k: base64.b64decode(v) for k, v in state["files"].items()}
    return Checkpoint(tensors=tensors, **state)


def _split_optimizer_state(name: str, state_dict: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """JSON part of an optimizer state dict; its tensors go into ``tensors`` under ``optim/NAME/...``."""
    import torch

    per_param: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensor_key = f"optim/{name}/{index}/{key}"
                tensors[tensor_key] = value.detach().contiguous()
                entry[key] = {"tensor": tensor_key}
            else:
                entry[key] = value
        per_param[str(index)] = entry
    return {"param_groups": state_dict["param_groups"], "state": per_param}


def _optimizer_state(saved: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a torch optimizer state dict from its JSON part and the checkpoint's tensors."""
    state = {
        int(index): {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v for k, v in values.items()}
        for index, values in saved["state"].items()
    }
    return {"state": state, "param_groups": saved["param_groups"]}
