"""The Open Inference Protocol v2 (KServe, Triton) over an export's graphs: model metadata and ``infer``.

Each graph of an export is a v2 model: the first under the served name, every other one as ``NAME-GRAPH`` (as the
Triton exporter names them). ``infer`` runs the graph once on the request's tensors (``data`` flat, in row-major
order) and answers its outputs the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DATATYPES = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(double)": ("FP64", np.float64),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(bool)": ("BOOL", np.bool_),
}
"""ONNX Runtime's type of a graph input or output -> the v2 datatype and its numpy type."""


class InferTensor(BaseModel):
    """One input tensor of an ``infer`` request."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The graph input's name (see GET /v2/models/{model}).")
    shape: list[int] = Field(description="Its shape; every axis >= 0.")
    datatype: str = Field(description="FP32, FP16, INT64, ... as the model's metadata says.")
    data: list[Any] = Field(description="Its values, flat, in row-major order.")
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``POST /v2/models/{model}/infer``: the graph's inputs, and optionally which outputs to answer."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class InferError(ValueError):
    """A request the graph cannot take: the message, and the field it names."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def graph_names(served: str, graphs: list[str]) -> dict[str, str]:
    """The v2 model name of each graph: ``served`` for the first, ``served-GRAPH`` for the others."""
    return {graph: served if index == 0 else f"{served}-{graph}" for index, graph in enumerate(graphs)}


def metadata(name: str, session: Any) -> dict[str, Any]:
    """The v2 metadata of one graph: its inputs and outputs with datatypes and shapes (-1 for a free axis)."""

    def tensors(values: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": value.name,
                "datatype": DATATYPES.get(value.type, (value.type, None))[0],
                "shape": [axis if isinstance(axis, int) else -1 for axis in value.shape],
            }
            for value in values
        ]

    return {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": tensors(session.get_inputs()),
        "outputs": tensors(session.get_outputs()),
    }


def infer(name: str, session: Any, request: InferRequest, max_rows: int) -> dict[str, Any]:
    """Run the graph on the request's tensors (at most ``max_rows`` on their first axis); an InferError naming the
    field for one it cannot take."""
    feeds = _feeds(session, request, max_rows)
    known = [output.name for output in session.get_outputs()]
    wanted = [output.name for output in request.outputs] if request.outputs else known
    for index, output in enumerate(wanted):
        if output not in known:
            raise InferError(f"outputs[{index}].name: the graph has no output {output!r} (outputs: {known})", "outputs")
    try:
        values = session.run(wanted, feeds)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own errors for inputs it cannot run
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InferError(f"the graph cannot run these inputs: {reason}", "inputs") from None
    for output, value in zip(wanted, values, strict=True):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InferError(
                f"outputs: the graph made values that are not finite in {output!r} for these inputs", "inputs"
            )
    types = {output.name: output.type for output in session.get_outputs()}
    return {
        "model_name": name,
        "model_version": "1",
        "id": request.id,
        "outputs": [
            {
                "name": output,
                "datatype": DATATYPES.get(types[output], (types[output], None))[0],
                "shape": list(value.shape),
                "data": value.ravel().tolist(),
            }
            for output, value in zip(wanted, values, strict=True)
        ],
    }


def _feeds(session: Any, request: InferRequest, max_rows: int) -> dict[str, np.ndarray]:
    """The request's tensors as numpy arrays, each checked against the graph input of its name: its datatype, shape
    (its first axis at most ``max_rows``), value count and values (numbers for numbers, true/false for BOOL)."""
    inputs = {value.name: value for value in session.get_inputs()}
    feeds: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        where = f"inputs[{index}]"
        graph_input = inputs.get(tensor.name)
        if graph_input is None:
            raise InferError(f"{where}.name: the graph has no input {tensor.name!r} (inputs: {list(inputs)})", "inputs")
        datatype, dtype = DATATYPES.get(graph_input.type, (graph_input.type, None))
        if tensor.datatype != datatype or dtype is None:
            raise InferError(
                f"{where}.datatype: input {tensor.name!r} takes {datatype}, not {tensor.datatype}", "inputs"
            )
        size = math.prod(tensor.shape)
        if any(axis < 0 for axis in tensor.shape) or len(tensor.data) != size:
            message = f"{where}: shape {tensor.shape} holds {size} values, but data has {len(tensor.data)}"
            raise InferError(message, "inputs")
        expected = graph_input.shape
        fits = len(expected) == len(tensor.shape) and all(
            not isinstance(axis, int) or axis == given for axis, given in zip(expected, tensor.shape, strict=True)
        )
        if not fits:
            shown = [axis if isinstance(axis, int) else -1 for axis in expected]
            raise InferError(f"{where}.shape: input {tensor.name!r} has shape {shown}, not {tensor.shape}", "inputs")
        if tensor.shape and tensor.shape[0] > max_rows:
            raise InferError(f"{where}.shape: {tensor.shape[0]} rows, at most {max_rows} a request here", "inputs")
        feeds[tensor.name] = _values(tensor, datatype, dtype, where)
    missing = sorted(set(inputs) - set(feeds))
    if missing:
        raise InferError(f"inputs: the graph also needs {', '.join(missing)}", "inputs")
    return feeds


def _values(tensor: InferTensor, datatype: str, dtype: Any, where: str) -> np.ndarray:
    """The tensor's data as ``dtype``: booleans for BOOL, numbers (not booleans, strings or null) for the others,
    integers within the integer type's range."""
    if datatype == "BOOL":
        fits = all(isinstance(value, bool) for value in tensor.data)
    elif np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        fits = all(
            isinstance(value, int) and not isinstance(value, bool) and limits.min <= value <= limits.max
            for value in tensor.data
        )
    else:
        fits = all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            for value in tensor.data
        )
    if not fits:
        kind = "true or false" if datatype == "BOOL" else f"finite numbers that fit {datatype}"
        raise InferError(f"{where}.data: {tensor.name!r} takes {kind}", "inputs")
    return np.asarray(tensor.data, dtype=dtype).reshape(tensor.shape)
