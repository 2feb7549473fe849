"""Resumable training checkpoints: one safetensors file, replaced atomically.

The file holds the model's tensors (``model/...``), each optimizer's tensors
(``optim/NAME/PARAM/KEY``) and rank 0's torch RNG state (``rng/torch``); everything else
(generator, step, config, facts, extra files, optimizer hyper-parameters, the
numpy batch RNG, the world size, every rank's RNG states, the fp16 loss scaler) is JSON
in the file's metadata, beside a sha256 of that JSON and every tensor, checked on load:
a damaged checkpoint is refused, never resumed. No pickle.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genloom import weights
from genloom.errors import ArtifactError
from genloom.fileio import atomic_write_bytes

if TYPE_CHECKING:
    import torch

    from genloom.generator import AnyGenerator

CHECKPOINT_FILE = "checkpoint.safetensors"
METADATA_KEY = "genloom_checkpoint"
DIGEST_KEY = "genloom_checkpoint_sha256"
"""Metadata key of the sha256 over the state JSON and every tensor's name, dtype, shape and bytes."""
MODEL_PREFIX = "model/"


@dataclass
class Checkpoint:
    """A training run frozen after ``step`` steps."""

    generator: str
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
    world_size: int = 1
    """How many processes trained the run; it resumes with as many."""
    ranks: list[dict[str, Any]] = field(default_factory=list)
    """Every rank's RNG states (:func:`rank_rng_state`), in rank order."""
    scaler: dict[str, Any] | None = None
    """The fp16 loss scaler's state, for runs in fp16."""
    base: dict[str, Any] | None = None
    """The model the run started from (a :class:`genloom.artifacts.BaseRecord` as JSON), for fine-tunes."""

    def restore(
        self,
        generator: AnyGenerator,
        optimizers: dict[str, torch.optim.Optimizer],
        rng: np.random.Generator,
        where: Path,
        rank: int = 0,
    ) -> None:
        """Put the saved weights, optimizer state and ``rank``'s RNG states back into a freshly built run."""
        import torch

        weights.load_module_tensors(generator.modules, self.tensors, str(where), prefix=MODEL_PREFIX)
        if set(optimizers) != set(self.optimizers):
            raise ArtifactError(f"{where} has optimizers {sorted(self.optimizers)}, this run has {sorted(optimizers)}")
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(_optimizer_state(self.optimizers[name], self.tensors))
        if self.ranks:
            restore_rank_rng(self.ranks[rank], rng)
        else:  # written before checkpoints kept every rank's states
            torch.set_rng_state(self.tensors["rng/torch"])
            rng.bit_generator.state = self.numpy_rng
        if generator.precision is not None:
            generator.precision.load_state_dict(self.scaler)


def rank_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """This process's RNG states as JSON: the numpy batch RNG, torch's CPU RNG and, where used, CUDA's."""
    import torch

    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    return {
        "numpy": rng.bit_generator.state,
        "torch": _tensor_b64(torch.get_rng_state()),
        "cuda": None if cuda is None else _tensor_b64(cuda),
    }


def restore_rank_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Put back what :func:`rank_rng_state` returned."""
    import torch

    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(_b64_tensor(state["torch"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(_b64_tensor(state["cuda"]))


def _tensor_b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _b64_tensor(text: str) -> torch.Tensor:
    import torch

    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def save_checkpoint(
    path: Path,
    generator: AnyGenerator,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: np.random.Generator,
    *,
    step: int,
    data: str,
    seconds: float,
    resumed: int,
    ranks: list[dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
) -> None:
    """Freeze the run in ``path`` atomically; a crash mid-write leaves the previous checkpoint.

    ``ranks`` are every rank's RNG states (:func:`rank_rng_state`, in rank order; default: this process's).
    """
    import torch

    ranks = ranks if ranks is not None else [rank_rng_state(rng)]
    tensors = {name: tensor.cpu() for name, tensor in weights.module_tensors(generator.modules, MODEL_PREFIX).items()}
    tensors["rng/torch"] = torch.get_rng_state()
    optimizer_json = {}
    for name, optimizer in optimizers.items():
        optimizer_json[name] = _split_optimizer_state(name, optimizer.state_dict(), tensors)
    state = {
        "generator": generator.name,
        "step": step,
        "data": data,
        "seconds": seconds,
        "resumed": resumed,
        "config": generator.config.model_dump(mode="json"),
        "facts": generator.facts,
        "files": {k: base64.b64encode(v).decode("ascii") for k, v in generator.extra_files().items()},
        "optimizers": optimizer_json,
        "numpy_rng": rng.bit_generator.state,
        "world_size": len(ranks),
        "ranks": ranks,
        "scaler": None if generator.precision is None else generator.precision.state_dict(),
        "base": base,
    }
    state_json = json.dumps(state)
    metadata = {METADATA_KEY: state_json, DIGEST_KEY: _digest(state_json, tensors)}
    atomic_write_bytes(path, weights.to_bytes(tensors, metadata))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged one is an ArtifactError naming it."""
    return parse_checkpoint(load_checkpoint_bytes(path), path)


def load_checkpoint_bytes(path: Path) -> bytes:
    """The bytes of the checkpoint at ``path``; an ArtifactError when there is none."""
    if not path.is_file():
        raise ArtifactError(f"no checkpoint at {path}; start the run without --resume")
    return path.read_bytes()


def parse_checkpoint(data: bytes, path: Path) -> Checkpoint:
    """A checkpoint from the bytes of the file at ``path`` (read there, or sent by rank 0); checked as on load."""
    tensors = weights.from_bytes(data, str(path))
    metadata = weights.metadata_of(data)
    if METADATA_KEY not in metadata:
        raise ArtifactError(f"{path} is not a genloom checkpoint (no '{METADATA_KEY}' metadata)")
    if DIGEST_KEY not in metadata:
        raise ArtifactError(
            f"{path} has no checksum (an older genloom wrote it, or it is damaged), so it cannot be "
            "resumed safely; start the run again in a new --out"
        )
    if _digest(metadata[METADATA_KEY], tensors) != metadata[DIGEST_KEY]:
        raise ArtifactError(
            f"{path} is corrupted: its contents do not match the sha256 recorded when it was written; "
            "restore a good copy of it, or start the run again in a new --out"
        )
    state = json.loads(metadata[METADATA_KEY])
    state["files"] = {k: base64.b64decode(v) for k, v in state["files"].items()}
    return Checkpoint(tensors=tensors, **state)


def _digest(state_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """Hex sha256 of the state JSON and of every tensor (name, dtype, shape, bytes), in name order."""
    import torch

    digest = hashlib.sha256(state_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _split_optimizer_state(name: str, state_dict: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """JSON part of an optimizer state dict; its tensors go into ``tensors`` under ``optim/NAME/...``."""
    import torch

    per_param: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensor_key = f"optim/{name}/{index}/{key}"
                tensors[tensor_key] = value.detach().cpu().contiguous()
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
