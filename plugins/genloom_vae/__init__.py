"""genloom's built-in VAE generators, registered through the public plugin hook.

This module imports no torch: the networks load when a model is built.
"""

from collections.abc import Callable
from typing import Any

import genloom
from genloom_vae.generator import ConditionalConvVAE, ConvVAE

__all__ = ["ConditionalConvVAE", "ConvVAE"]


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator[Any, Any, Any]]], None]) -> None:
    register(ConvVAE)
    register(ConditionalConvVAE)
