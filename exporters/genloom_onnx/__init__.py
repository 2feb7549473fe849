"""genloom's ONNX exporter and the Triton model repository made from its exports, registered through the public
plugin hook.

This module imports no torch or onnx: they load when an export runs.
"""

from collections.abc import Callable

import genloom
from genloom.contracts import Exporter
from genloom_onnx.exporter import OnnxExporter
from genloom_onnx.triton import TritonExporter

__all__ = ["OnnxExporter", "TritonExporter"]


@genloom.hookimpl
def register_exporters(register: Callable[[Exporter], None]) -> None:
    register(OnnxExporter())
    register(TritonExporter())
