"""Module weights to and from safetensors bytes. No pickle: tensors and JSON only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from genloom.errors import ArtifactError

if TYPE_CHECKING:
    import torch


def module_tensors(modules: Mapping[str, torch.nn.Module], prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of the modules' state dicts, keyed ``{prefix}{module}.{name}``.

    Tied tensors (the same storage under two names, e.g. tied embeddings) are kept
    once, under their first name; :func:`load_module_tensors` ties them back.
    """
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for module_name, module in modules.items():
        for name, tensor in module.state_dict().items():
            identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if tensor.numel() and identity in seen:
                continue
            seen.add(identity)
            tensors[f"{prefix}{module_name}.{name}"] = tensor.detach().contiguous()
    return tensors


def load_module_tensors(
    modules: Mapping[str, torch.nn.Module], tensors: Mapping[str, torch.Tensor], where: str, prefix: str = ""
) -> None:
    """Load what :func:`module_tensors` saved into freshly built modules; name the file on any mismatch."""
    expected = module_tensors(modules, prefix)
    saved = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{where} does not fit this model (missing: {', '.join(missing[:5]) or 'none'}; "
            f"unexpected: {', '.join(unexpected[:5]) or 'none'}); was it saved with another config?"
        )
    for module_name, module in modules.items():
        head = f"{prefix}{module_name}."
        state = {k[len(head) :]: v for k, v in saved.items() if k.startswith(head)}
        try:
            module.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ArtifactError(f"{where} does not fit module '{module_name}': {exc}") from None


def to_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise tensors (and string metadata) in the safetensors format."""
    from safetensors.torch import save

    return save(dict(tensors), metadata=metadata)


def from_bytes(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """Read safetensors bytes; a damaged file is an ArtifactError naming ``where``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise ArtifactError(f"{where} is not a readable safetensors file ({exc})") from None


def metadata_of(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes whose header :func:`from_bytes` has already read successfully."""
    import json

    header_size = int.from_bytes(data[:8], "little")
    metadata: dict[str, str] = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    return metadata
