"""The kinds of data that ship with genloom, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from genloom.hookspecs import hookimpl
from genloom.kinds import DataKind
from genloom.kinds.image import IMAGE
from genloom.kinds.text import TEXT


@hookimpl
def register_data_kinds(register: Callable[[DataKind], None]) -> None:
    register(IMAGE)
    register(TEXT)
