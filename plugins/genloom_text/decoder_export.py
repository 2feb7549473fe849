"""How the GPT goes to ONNX: the fused graph with its in-place cache (the default), the portable graph of standard
operators, and the ONNX Runtime GenAI package files that let ``onnxruntime_genai.Model(EXPORT_DIR)`` run the first.

Both graphs use the input and output names of Hugging Face optimum exports:
``input_ids``, ``attention_mask``, ``past_key_values.N.key``/``.value`` ->
``logits``, ``present.N.key``/``.value``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

import genloom
from genloom.tokenizer import END_OF_TEXT, Tokenizer
from genloom_text.gpt import GPT, DecoderGraph

GENAI_CONFIG_FILE = "genai_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
GENAI_RANDOM_SEED = 0
"""GenAI's search seed in the written config: with its default (-1) every ``og.Generator()`` spends 12-14 ms seeding
from the system."""
PARITY_CAPACITY = 16
"""Cache positions of the fused graph's parity inputs (the graph takes any capacity up to the context)."""


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """The past input and present output names, two per layer (key, value)."""
    names = [
        f"{k}.{i}.{part}" for k in ("past_key_values", "present") for i in range(layers) for part in ("key", "value")
    ]
    return names[: 2 * layers], names[2 * layers :]


def fused_decoder(gpt: GPT, tokenizer: Tokenizer, options: dict[str, Any]) -> genloom.ExportSpec:
    """The default export: one graph on ONNX Runtime's fused operators with an in-place cache
    (``genloom_text.onnx_graph``), the GenAI package files, and the portable form beside it."""

    from genloom_text.gpt import InPlaceDecoderGraph
    from genloom_text.onnx_graph import build_decoder_graph

    layers, heads, head_dim = options["layers"], options["heads"], options["head_dim"]
    past_names, present_names = cache_names(layers)
    vocab = gpt.wte.weight.shape[0]
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
        **{name: {0: "batch_size", 2: "capacity"} for name in past_names + present_names},
    }
    capacity = min(PARITY_CAPACITY, options["context_length"])

    def sample_inputs(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """At batch 1 a prompt into an empty cache; above, one decoding step of rows at different lengths."""
        shape = (batch, heads, capacity, head_dim)
        if batch == 1:
            length = int(rng.integers(2, capacity))
            buffers = [np.zeros(shape, np.float32) for _ in past_names]
            return (rng.integers(0, vocab, (1, length), dtype=np.int64), np.ones((1, length), np.int64), *buffers)
        lengths = rng.integers(2, capacity + 1, batch)
        mask = (np.arange(capacity)[None, :] < lengths[:, None]).astype(np.int64)  # as wide as the runtime's
        buffers = [rng.standard_normal(shape, dtype=np.float32) for _ in past_names]
        return (rng.integers(0, vocab, (batch, 1), dtype=np.int64), mask, *buffers)

    graph = _decoder_graph(
        InPlaceDecoderGraph(gpt),
        sample_inputs,
        axes,
        layers,
        build=lambda opset: build_decoder_graph(gpt, opset, past_names, present_names),
    )
    return genloom.ExportSpec(
        "text-decoder",
        [graph],
        {**options, "cache": "in-place"},
        files=genai_files(tokenizer, options, vocab, f"{graph.name}.onnx"),
        portable=portable_decoder(gpt, options),
    )


def portable_decoder(gpt: GPT, options: dict[str, Any]) -> genloom.ExportSpec:
    """The graph in standard operators, traced by torch.onnx: each step's present is the past extended by the new
    positions (what runs in runtimes without ONNX Runtime's contrib operators, e.g. OpenVINO or onnx.reference)."""
    layers, heads, head_dim = options["layers"], options["heads"], options["head_dim"]
    past_names, present_names = cache_names(layers)
    total = "past_sequence_length + sequence_length"
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: total},
        "logits": {0: "batch_size", 1: "sequence_length"},
        **{name: {0: "batch_size", 2: "past_sequence_length"} for name in past_names},
        **{name: {0: "batch_size", 2: total} for name in present_names},
    }
    vocab = gpt.wte.weight.shape[0]

    def sample_inputs(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        past, new = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        caches = [rng.standard_normal((batch, heads, past, head_dim), dtype=np.float32) for _ in past_names]
        return (rng.integers(0, vocab, (batch, new), dtype=np.int64), np.ones((batch, past + new), np.int64), *caches)

    return genloom.ExportSpec("text-decoder", [_decoder_graph(DecoderGraph(gpt), sample_inputs, axes, layers)], options)


def _decoder_graph(
    module: DecoderGraph,
    sample_inputs: Callable[[int, np.random.Generator], tuple[np.ndarray, ...]],
    axes: dict[str, dict[int, str]],
    layers: int,
    build: Callable[[int], Any] | None = None,
) -> genloom.GraphSpec:
    """The ``decoder`` graph of either form, traced with the sample inputs at batch 2 (the parity gate's seed)."""
    import torch

    past_names, present_names = cache_names(layers)
    example = sample_inputs(2, np.random.default_rng(0))
    return genloom.GraphSpec(
        "decoder",
        module,
        tuple(torch.from_numpy(x) for x in example),
        ["input_ids", "attention_mask", *past_names],
        ["logits", *present_names],
        axes,
        sample_inputs,
        build=build,
    )


def genai_files(tokenizer: Tokenizer, options: dict[str, Any], vocab: int, graph_file: str) -> dict[str, bytes]:
    """``genai_config.json`` and ``tokenizer_config.json``: what ONNX Runtime GenAI reads beside the graph and
    ``tokenizer.json`` (greedy search by default, the cache as one shared buffer)."""
    end = tokenizer.end_of_text
    layers, heads, head_dim = options["layers"], options["heads"], options["head_dim"]
    config = {
        "model": {
            "type": "decoder",
            "bos_token_id": end,
            "eos_token_id": end,
            "pad_token_id": end,
            "context_length": options["context_length"],
            "vocab_size": vocab,
            "decoder": {
                "filename": graph_file,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": head_dim,
                "hidden_size": heads * head_dim,
                "num_attention_heads": heads,
                "num_key_value_heads": heads,
                "num_hidden_layers": layers,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "do_sample": False,
            "num_beams": 1,
            "num_return_sequences": 1,
            "max_length": options["context_length"],
            "min_length": 0,
            "past_present_share_buffer": True,
            "random_seed": GENAI_RANDOM_SEED,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,
        "model_max_length": options["context_length"],
    }
    return {
        GENAI_CONFIG_FILE: (json.dumps(config, indent=2) + "\n").encode(),
        TOKENIZER_CONFIG_FILE: (json.dumps(tokenizer_config, indent=2) + "\n").encode(),
    }
