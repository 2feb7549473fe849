"""genloom's ONNX exporter, registered through the public plugin hook.

This module imports no torch or onnx: they load when an export runs.
"""

from collections.abc import Callable

import genloom
from genloom.contracts import Exporter
from genloom_onnx.exporter import OnnxExporter

__all__ = ["OnnxExporter"]


@genloom.hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    register(OnnxExporter())
