"""The files an ONNX graph makes ONNX Runtime open besides itself, read from the protobuf wire format.

A tensor stored as external data names a file (its ``location``) that ONNX Runtime
opens relative to the graph. Before a session opens, the runtime checks that each
such name is a file the manifest lists and hashes. The check reads the file's
structure only (weights are skipped, not parsed), without importing ``onnx``,
which alone costs about two seconds per process.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from genloom.errors import ArtifactError

# Which length-delimited fields of each onnx.proto message hold messages that can lead to a TensorProto.
_NESTED: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},  # ModelProto.graph, .training_info, .functions
    "training": {1: "graph", 2: "graph"},  # TrainingInfoProto.initialization, .algorithm
    "function": {7: "node", 11: "attribute"},  # FunctionProto.node, .attribute_proto
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # GraphProto.node, .initializer, .sparse_initializer
    "node": {5: "attribute"},  # NodeProto.attribute
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # SparseTensorProto.values, .indices
    "tensor": {13: "entry"},  # TensorProto.external_data
    "entry": {},  # StringStringEntryProto: key = 1, value = 2
}
_DEPTH_LIMIT = 64


class _Truncated(Exception):
    """The bytes end inside a field, or a field's encoding is not protobuf's."""


def external_data_locations(path: Path) -> set[str]:
    """The ``location`` of every tensor in the ONNX file at ``path`` stored as external data (empty for most graphs).

    An ArtifactError if the file is not an ONNX protobuf (truncated, damaged, another format).
    """
    try:
        with open(path, "rb") as handle:
            if handle.seek(0, 2) == 0:
                raise _Truncated
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as data:
                locations: set[str] = set()
                _walk(data, 0, len(data), "model", locations, 0)
                return locations
    except (_Truncated, UnicodeDecodeError, RecursionError):
        raise ArtifactError(f"{path} is not a valid ONNX graph (truncated or damaged); re-export the model") from None


def _walk(data: memoryview, start: int, end: int, kind: str, locations: set[str], depth: int) -> None:
    if depth > _DEPTH_LIMIT:
        raise _Truncated
    nested = _NESTED[kind]
    entry: dict[int, str] = {}
    for number, wire_type, value_start, value_end in _fields(data, start, end):
        if wire_type != 2:
            continue
        if kind == "entry" and number in (1, 2):
            entry[number] = bytes(data[value_start:value_end]).decode("utf-8")
        elif number in nested:
            _walk(data, value_start, value_end, nested[number], locations, depth + 1)
    if kind == "entry" and entry.get(1) == "location":
        locations.add(entry.get(2, ""))


def _fields(data: memoryview, position: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Each field of the message in ``data[position:end]``: its number, wire type and the span of its value."""
    while position < end:
        key, position = _varint(data, position, end)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, value_end = _varint(data, position, end)
        elif wire_type == 1:
            value_end = position + 8
        elif wire_type == 5:
            value_end = position + 4
        elif wire_type == 2:
            length, position = _varint(data, position, end)
            value_end = position + length
        else:  # groups (3, 4) are not used by onnx.proto; anything else is not protobuf
            raise _Truncated
        if number == 0 or value_end > end:
            raise _Truncated
        yield number, wire_type, position, value_end
        position = value_end


def _varint(data: memoryview, position: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= end or shift > 63:
            raise _Truncated
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
