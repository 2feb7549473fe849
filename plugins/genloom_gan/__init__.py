"""genloom's built-in GAN generators, registered through the public plugin hook.

This module imports no torch: the networks load when a model is built.
"""

from collections.abc import Callable

import genloom
from genloom_gan.generator import DCGAN, ConditionalDCGAN

__all__ = ["ConditionalDCGAN", "DCGAN"]


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator]], None]) -> None:
    register(DCGAN)
    register(ConditionalDCGAN)
