"""genloom's built-in text generators (``gpt``, ``lstm``) and their runtime drivers, registered through the public
plugin hooks.

This module imports no torch: the networks load when a model is built, and the
runtime drivers (:mod:`genloom_text.runtime`) never need it.
"""

from collections.abc import Callable
from typing import Any

import genloom
from genloom.contracts import RuntimeDriver
from genloom_text.generator import GPTGenerator, LSTMGenerator
from genloom_text.hf import load_gpt2
from genloom_text.runtime import DRIVERS

__all__ = ["GPTGenerator", "LSTMGenerator", "load_gpt2"]


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator[Any, Any, Any]]], None]) -> None:
    register(GPTGenerator)
    register(LSTMGenerator)


@genloom.hookimpl
def register_runtime_drivers(register: Callable[[RuntimeDriver], None]) -> None:
    for driver in DRIVERS:
        register(driver)
