"""genloom's built-in text generators (``gpt``, ``lstm``), registered through the public plugin hook.

This module imports no torch: the networks load when a model is built.
"""

from collections.abc import Callable

import genloom
from genloom_text.generator import GPTGenerator, LSTMGenerator
from genloom_text.hf import load_gpt2

__all__ = ["GPTGenerator", "LSTMGenerator", "load_gpt2"]


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator]], None]) -> None:
    register(GPTGenerator)
    register(LSTMGenerator)
