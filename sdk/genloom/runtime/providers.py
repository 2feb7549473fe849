"""Choosing where ONNX Runtime runs: CUDA when it really works, the CPU otherwise."""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

from genloom.errors import ConfigError

log = logging.getLogger("genloom.runtime")
Providers = Literal["auto", "cuda", "cpu"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def create_session(path: str, providers: Providers, options: Any, cpu_threads: int = 0) -> Any:
    """An ``onnxruntime.InferenceSession`` on the requested providers; ``session.get_providers()[0]`` is the one in use.

    ``options`` are ``onnxruntime.SessionOptions`` (threads, graph optimisation
    level, ...); by default ONNX Runtime logs errors only and runs each operator on
    ``cpu_threads`` threads (0: one per core). ``auto`` tries CUDA
    quietly (ONNX Runtime's own load errors are silenced) and
    logs one line when it falls back to the CPU; ``cuda`` without a usable CUDA is a
    ConfigError.
    """
    import onnxruntime

    if providers not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"providers: {providers!r} is not one of 'auto', 'cuda', 'cpu'")
    if options is None:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: shape-inference notes are not the user's business
        options.intra_op_num_threads = cpu_threads
    if providers != "cpu":
        session = _try_cuda(onnxruntime, path, options)
        if session is not None:
            return session
        if providers == "cuda":
            raise ConfigError(
                "providers='cuda': ONNX Runtime cannot run on CUDA here (no GPU, or its CUDA/cuDNN libraries are "
                "missing); use 'auto' or 'cpu'"
            )
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=[CPU])
    if providers == "auto":  # said once the graph opens on the CPU: a graph that opens nowhere is the error to report
        log.warning(
            "genloom: CUDA is not usable on this machine (no GPU or no CUDA libraries); ONNX Runtime runs on the CPU"
        )
    return session


@functools.cache
def cuda_usable() -> bool:
    """Whether ONNX Runtime really runs on CUDA here (a GPU and the CUDA libraries): a one-node graph is opened on
    it."""
    import onnxruntime
    from onnx import TensorProto, helper

    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", values[:1], values[1:])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    return _try_cuda(onnxruntime, probe, onnxruntime.SessionOptions()) is not None


def _try_cuda(onnxruntime: Any, path: str | bytes, options: Any) -> Any:
    if CUDA not in onnxruntime.get_available_providers():
        return None
    onnxruntime.set_default_logger_severity(4)  # the failed library loads are not the user's business
    try:
        session = onnxruntime.InferenceSession(path, sess_options=options, providers=[CUDA, CPU])
    except Exception:  # noqa: BLE001 - onnxruntime raises plain Exceptions for provider failures
        return None
    finally:
        onnxruntime.set_default_logger_severity(2)
    return session if session.get_providers()[0] == CUDA else None
