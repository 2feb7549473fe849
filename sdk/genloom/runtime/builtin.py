"""The runtime drivers that ship with genloom, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from genloom.hookspecs import hookimpl
from genloom.runtime import OnnxImageModel, OnnxTextModel, RuntimeDriver


@hookimpl
def register_runtime_drivers(register: Callable[[RuntimeDriver], None]) -> None:
    register(RuntimeDriver("image-from-latent", OnnxImageModel, "latents (and labels) -> images, one run"))
    register(RuntimeDriver("text-decoder", OnnxTextModel, "decoder-only transformer; KV cache as past/present tensors"))
    register(RuntimeDriver("text-recurrent", OnnxTextModel, "recurrent language model; state tensors in and out"))
