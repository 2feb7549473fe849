"""The GPT as one ONNX decoder graph on ONNX Runtime's fused operators, written node by node from its weights.

torch.onnx writes attention out as MatMul/Softmax/Where and a cache that grows by
concatenation, and ONNX Runtime's transformer optimizer fuses no attention in it.
This graph uses the ``com.microsoft`` operators that ONNX Runtime runs as fused
kernels on the CPU and on CUDA, as ONNX Runtime GenAI's model builder writes them:
``GroupQueryAttention`` (attention over a fixed-capacity cache that it updates in
place when past and present are bound to one buffer, each row at its own length),
``SkipLayerNormalization`` (residual add, bias and LayerNorm) and ``FastGelu`` (bias
and tanh GELU). It computes :class:`genloom_text.gpt.InPlaceDecoderGraph`, which the
exporter's parity gate runs beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genloom_text.gpt import GPT

IR_VERSION = 10
"""ONNX IR version of the graph: the newest that every ONNX Runtime from 1.18 on opens."""
LAYER_NORM_EPSILON = 1e-5
"""torch.nn.LayerNorm's default, which the GPT's layer norms use."""


class _Graph:
    """Nodes and initializers in the order they are added; names made unique by a counter."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, domain: str = "", **attributes: Any) -> list[str]:
        from onnx import helper

        name = f"{op}_{len(self.nodes)}"
        names = [f"{name}/output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=name, domain=domain, **attributes))
        return names

    def one(self, op: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        return self.node(op, inputs, 1, domain, **attributes)[0]


def _array(parameter: torch.Tensor | None) -> np.ndarray | None:
    return None if parameter is None else parameter.detach().float().cpu().numpy()


def build_decoder_graph(gpt: GPT, opset: int, past_names: list[str], present_names: list[str]) -> Any:
    """The fused decoder graph (an ``onnx.ModelProto``): inputs ``input_ids``, ``attention_mask`` and the past
    buffers ``past_names``; outputs ``logits`` and the buffers ``present_names`` (see ``InPlaceDecoderGraph``)."""
    from onnx import TensorProto, helper

    graph = _Graph()
    blocks = gpt.blocks
    first = blocks[0]
    heads, width = int(first.attn.heads), int(gpt.wte.weight.shape[1])
    head_dim = width // heads
    one, zero = graph.weight("one", np.array(1, np.int64)), graph.weight("zero", np.array(0, np.int64))
    axis_1 = graph.weight("axis_1", np.array([1], np.int64))

    # Each row's length and where its new tokens go: GroupQueryAttention's seqlens_k and total_sequence_length.
    lengths = graph.one("ReduceSum", ["attention_mask", axis_1], keepdims=0)
    seqlens_k = graph.one("Cast", [graph.one("Sub", [lengths, one])], to=TensorProto.INT32)
    mask_width = graph.one("Gather", [graph.one("Shape", ["attention_mask"]), one], axis=0)
    total_length = graph.one("Cast", [mask_width], to=TensorProto.INT32)
    new = graph.one("Gather", [graph.one("Shape", ["input_ids"]), one], axis=0)
    is_prompt = graph.one("Equal", [new, mask_width])
    starts = graph.one("Where", [is_prompt, zero, graph.one("Sub", [lengths, new])])
    positions = graph.one("Add", [graph.one("Unsqueeze", [starts, axis_1]), graph.one("Range", [zero, new, one])])

    token_embedding = _array(gpt.wte.weight)
    assert token_embedding is not None
    tokens = graph.one("Gather", [graph.weight("wte", token_embedding), "input_ids"])
    places = graph.one("Gather", [graph.weight("wpe", _array(gpt.wpe.weight)), positions])  # type: ignore[arg-type]

    def skip_norm(x: str, skip: str, norm: torch.nn.LayerNorm, prefix: str, bias: str | None = None) -> list[str]:
        """LayerNorm(x + skip + bias) and the sum itself (the new residual stream)."""
        inputs = [x, skip, graph.weight(f"{prefix}.weight", _array(norm.weight))]  # type: ignore[arg-type]
        beta = _array(norm.bias)
        inputs += [graph.weight(f"{prefix}.bias", beta) if beta is not None else ""]
        inputs += [bias] if bias is not None else []
        while not inputs[-1]:
            inputs.pop()
        normed, _, _, total = graph.node(
            "SkipLayerNormalization", inputs, 4, "com.microsoft", epsilon=LAYER_NORM_EPSILON
        )
        return [normed, total]

    def linear(x: str, layer: torch.nn.Linear, prefix: str, add_bias: bool = True) -> tuple[str, str | None]:
        """x @ W^T, and the bias: added here with ``add_bias``, else returned for a fused node to add."""
        product = graph.one("MatMul", [x, graph.weight(f"{prefix}.weight", _array(layer.weight).T)])  # type: ignore[union-attr]
        bias = _array(layer.bias)
        if bias is None:
            return product, None
        name = graph.weight(f"{prefix}.bias", bias)
        return (graph.one("Add", [product, name]), None) if add_bias else (product, name)

    normed, residual = skip_norm(tokens, places, first.ln_1, "h.0.ln_1")
    for index, block in enumerate(blocks):
        prefix = f"h.{index}"
        qkv, _ = linear(normed, block.attn.c_attn, f"{prefix}.attn.c_attn")
        attended, present_key, present_value = graph.node(
            "GroupQueryAttention",
            [qkv, "", "", past_names[2 * index], past_names[2 * index + 1], seqlens_k, total_length],
            3,
            "com.microsoft",
            num_heads=heads,
            kv_num_heads=heads,
        )
        graph.nodes[-1].output[1:] = [present_names[2 * index], present_names[2 * index + 1]]
        projected, projection_bias = linear(attended, block.attn.c_proj, f"{prefix}.attn.c_proj", add_bias=False)
        normed, residual = skip_norm(projected, residual, block.ln_2, f"{prefix}.ln_2", projection_bias)
        hidden, hidden_bias = linear(normed, block.mlp.c_fc, f"{prefix}.mlp.c_fc", add_bias=False)
        activated = graph.one("FastGelu", [hidden, *([hidden_bias] if hidden_bias else [])], "com.microsoft")
        output, output_bias = linear(activated, block.mlp.c_proj, f"{prefix}.mlp.c_proj", add_bias=False)
        last = index == len(blocks) - 1
        norm, name = (gpt.ln_f, "ln_f") if last else (blocks[index + 1].ln_1, f"h.{index + 1}.ln_1")
        normed, residual = skip_norm(output, residual, norm, name, output_bias)
    graph.nodes.append(
        helper.make_node(
            "MatMul", [normed, graph.weight("lm_head.weight", token_embedding.T)], ["logits"], name="lm_head"
        )
    )

    vocab = int(token_embedding.shape[0])
    cache_shape: list[str | int] = ["batch_size", int(heads), "capacity", int(head_dim)]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        *(helper.make_tensor_value_info(name, TensorProto.FLOAT, cache_shape) for name in past_names),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", vocab]),
        *(helper.make_tensor_value_info(name, TensorProto.FLOAT, cache_shape) for name in present_names),
    ]
    body = helper.make_graph(graph.nodes, "genloom_gpt_decoder", inputs, outputs, graph.initializers)
    return helper.make_model(
        body,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)],
        ir_version=IR_VERSION,
        producer_name="genloom",
    )
