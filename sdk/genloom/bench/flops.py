"""What one run of an ONNX graph costs, from the graph itself: its FLOPs at batch 1, and the bytes of weights it reads."""

from __future__ import annotations

import math
from pathlib import Path


def graph_flops(path: str | Path, dims: dict[str, int]) -> int:
    """FLOPs (multiply and add counted apart) of Conv, ConvTranspose, MatMul and Gemm nodes, with named axes set from ``dims``."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for value in model.graph.input:
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param:
                dimension.dim_value = dims.get(dimension.dim_param, 1)
    del model.graph.value_info[:]
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]
            total += 2 * math.prod(out) * math.prod(weight[1:])
        elif node.op_type == "ConvTranspose":
            weight, source = shapes[node.input[1]], shapes[node.input[0]]
            total += 2 * math.prod(source) * math.prod(weight[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            first = shapes.get(node.input[0])
            inner = first[-1] if node.op_type == "MatMul" or not _transposed(node, "transA") else first[-2]
            total += 2 * math.prod(out) * inner
    return total


def _transposed(node: object, attribute: str) -> bool:
    return any(a.name == attribute and a.i for a in node.attribute)  # type: ignore[attr-defined]


def weight_bytes_read(path: str | Path) -> int:
    """Bytes of the graph's weights (initializers) one run reads: all of each weight a node consumes,
    except those only looked up row by row (``Gather``: embeddings), and each weight once however many nodes share it."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    sizes = {t.name: math.prod(t.dims) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize for t in model.graph.initializer}
    read = {name for node in model.graph.node if node.op_type != "Gather" for name in node.input if name in sizes}
    return sum(sizes[name] for name in read)
