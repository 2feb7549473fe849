"""genloom's built-in GAN generators, registered through the public plugin hook.

This module imports no torch: the networks load when a model is built.
"""

from collections.abc import Callable
from typing import Any

import genloom
from genloom_gan.generator import DCGAN, ConditionalDCGAN

__all__ = ["ConditionalDCGAN", "DCGAN"]


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator[Any, Any, Any]]], None]) -> None:
    register(DCGAN)
    register(ConditionalDCGAN)
