"""genloom's audio plugin: the ``audio`` kind, the ``wav-folder`` and ``notes`` sources, the ``wavenet`` generator and
the ``wavenet-step`` runtime driver.

This module imports no torch: the network loads when a model is built.
"""

from collections.abc import Callable
from typing import Any

import genloom
from genloom.data import DataSource
from genloom.kinds import DataKind
from genloom_audio.data import SOURCES
from genloom_audio.generator import WaveNet
from genloom_audio.kind import AUDIO, AudioResult, AudioSampling
from genloom_audio.runtime import WaveNetStepDriver

__all__ = ["AudioResult", "AudioSampling", "WaveNet"]


@genloom.hookimpl
def register_data_kinds(register: Callable[[DataKind], None]) -> None:
    register(AUDIO)


@genloom.hookimpl
def register_data_sources(register: Callable[[DataSource], None]) -> None:
    for source in SOURCES:
        register(source)


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator[Any, Any, Any]]], None]) -> None:
    register(WaveNet)


@genloom.hookimpl
def register_runtime_drivers(register: Callable[[Any], None]) -> None:
    register(WaveNetStepDriver())
