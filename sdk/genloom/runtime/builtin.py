"""The runtime driver that ships with genloom, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from genloom.contracts import RuntimeDriver
from genloom.hookspecs import hookimpl
from genloom.runtime.image import ImageFromLatent


@hookimpl
def register_runtime_drivers(register: Callable[[RuntimeDriver], None]) -> None:
    register(ImageFromLatent())
