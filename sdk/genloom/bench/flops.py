"""What one run of an ONNX graph costs, from the graph itself: its FLOPs at batch 1, and the bytes of weights it
reads."""

from __future__ import annotations

import math
from pathlib import Path


def graph_flops(path: str | Path, dims: dict[str, int]) -> int:
    """FLOPs (multiply and add counted apart) of the Conv, ConvTranspose, MatMul and Gemm nodes, with named axes set
    from ``dims``."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for value in model.graph.input:
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param:
                dimension.dim_value = dims.get(dimension.dim_param, 1)
    del model.graph.value_info[:]
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.output[0] in shapes and all(name in shapes for name in node.input[:2]):
            total += op_flops(node.op_type, [shapes[name] for name in node.input[:2]], shapes[node.output[0]])
    return total


def op_flops(op_type: str, inputs: list[list[int]], output: list[int]) -> int:
    """FLOPs of one Conv, ConvTranspose, MatMul or Gemm (0 for other operators) from its first two input shapes and its
    output shape."""
    if not output or 0 in output or len(inputs) < 2:
        return 0
    if op_type == "Conv":
        return 2 * math.prod(output) * math.prod(inputs[1][1:])
    if op_type == "ConvTranspose":  # each input element meets every weight of its channel
        return 2 * math.prod(inputs[0]) * math.prod(inputs[1][1:])
    if op_type == "Gemm":  # A is (M, K), or (K, M) with transA
        return 2 * math.prod(output) * (math.prod(inputs[0]) // output[0])
    if op_type == "MatMul":  # (..., M, K) x (..., K, N)
        return 2 * math.prod(output) * inputs[0][-1]
    return 0


def weight_bytes_read(path: str | Path) -> int:
    """Bytes of the graph's weights (initializers) one run reads: all of each weight a node consumes,
    except those only looked up row by row (``Gather``: embeddings), and each weight once however many nodes share
    it."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    sizes = {
        t.name: math.prod(t.dims) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in model.graph.initializer
    }
    read = {name for node in model.graph.node if node.op_type != "Gather" for name in node.input if name in sizes}
    return sum(sizes[name] for name in read)
