"""Tokens/s of text decoding and prefill latency: Hugging Face ``transformers`` (the peer) against genloom's paths.

Every path decodes greedily a fixed number of tokens (``min_new_tokens`` =
``max_new_tokens``) after a short prompt, at batch 1 and 8; prefill latency is one
run over a 128-token prompt (generating one token). The roof is the machine's
memory-read bandwidth over the bytes of weights one decoding step reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from genloom.bench.context import BenchContext
from genloom.bench.flops import weight_bytes_read
from genloom.bench.machine import read_bandwidth
from genloom.bench.measure import Timing, time_call
from genloom.contracts import OffersBenchmarkPeer
from genloom.tokenizer import Tokenizer

TEXT_BATCHES = (1, 8)
PREFILL_TOKENS = 128


class TextRow(BaseModel):
    """One way of decoding, at one batch size."""

    model: str
    path: str = Field(description="'transformers generate', 'genloom torch (KV cache)', 'onnxruntime fp32', ...")
    batch: int
    tokens_per_second: float
    decode_timing: Timing
    prefill_seconds: float = Field(
        description="Median latency of one prompt of prefill_tokens (batch 1), one token generated."
    )
    prefill_tokens: int = Field(description=f"{PREFILL_TOKENS}, or one less than the context when that is shorter.")
    weight_bytes: int = Field(description="Bytes of weights one decoding step reads.")
    read_gbytes_per_second: float = Field(
        description="The machine's memory read bandwidth, measured just before this path's rows."
    )
    ratio_to_peer: float | None = Field(
        description="tokens/s over the peer's (transformers generate) at the same batch size; "
        "None where the peer is unavailable (see the report's peer_unavailable)."
    )
    share_of_roof: float | None = Field(
        description="tokens/s over batch x read_gbytes_per_second / weight_bytes; None on CUDA."
    )


class Decoder:
    """A way to decode: ``decode(batch, tokens)`` and ``prefill()`` (a prompt of ``prefill_tokens``), its weight bytes,
    and whether it runs on the CPU (whose bandwidth roof then applies)."""

    def __init__(
        self, path: str, decode: Any, prefill: Any, weight_bytes: int, prefill_tokens: int, on_cpu: bool = True
    ) -> None:
        self.path, self.decode, self.prefill, self.weight_bytes = path, decode, prefill, weight_bytes
        self.prefill_tokens, self.on_cpu = prefill_tokens, on_cpu


def genloom_decoder(path: str, model: Any, weight_bytes: int, on_cpu: bool) -> Decoder:
    """genloom's public API (torch or ONNX Runtime model) as a :class:`Decoder`."""
    owner = model.generator if model.backend == "torch" else model  # each a genloom.textgen.TextModel
    prefill_tokens = min(PREFILL_TOKENS, (owner.context_length or PREFILL_TOKENS + 1) - 1)
    long_prompt = _prompt_of(owner.tokenizer, prefill_tokens - int(owner.prepend_end_of_text))

    def decode(batch: int, tokens: int) -> None:
        model.generate(prompt=["The"] * batch, max_new_tokens=tokens, min_new_tokens=tokens)

    def prefill() -> None:
        model.generate(prompt=long_prompt, max_new_tokens=1)

    return Decoder(path, decode, prefill, weight_bytes, prefill_tokens, on_cpu)


def text_rows(
    name: str,
    peer: Decoder | None,
    decoders: list[Decoder],
    read_bandwidth: Callable[[], float],
    tokens: int = 32,
    batches: tuple[int, ...] = TEXT_BATCHES,
    repeats: int = 5,
) -> list[TextRow]:
    """Rows for the peer (when there is one) and each decoder at each batch size, compared with the peer's.

    ``read_bandwidth()`` (GB/s) is measured again just before each decoder's rows:
    on a shared machine the memory bandwidth drifts from minute to minute (measured
    here: 50 to 90 GB/s within half an hour), so a roof taken minutes earlier could
    be a different machine's.
    """
    rows: list[TextRow] = []
    peer_rates: dict[int, float] = {}
    for decoder in [*([peer] if peer else []), *decoders]:
        bandwidth = read_bandwidth()
        prefill = time_call(decoder.prefill, repeats=repeats).median
        for batch in batches:
            timing = time_call(functools.partial(decoder.decode, batch, tokens), repeats=repeats)
            rate = batch * tokens / timing.median
            if decoder is peer:
                peer_rates[batch] = rate
            roof = batch * bandwidth * 1e9 / decoder.weight_bytes
            rows.append(
                TextRow(
                    model=name,
                    path=decoder.path,
                    batch=batch,
                    tokens_per_second=rate,
                    decode_timing=timing,
                    prefill_seconds=prefill,
                    prefill_tokens=decoder.prefill_tokens,
                    weight_bytes=decoder.weight_bytes,
                    read_gbytes_per_second=bandwidth,
                    ratio_to_peer=rate / peer_rates[batch] if peer_rates else None,
                    share_of_roof=rate / roof if decoder.on_cpu else None,
                )
            )
    return rows


def _prompt_of(tokenizer: Tokenizer, length: int) -> str:
    """A text that encodes to ``length`` tokens (or as close as whole words get)."""
    words = "the value of a list is returned when the function is called with its arguments".split()
    text = ""
    index = 0
    while len(tokenizer.encode(text)) < length:
        text += (" " if text else "") + words[index % len(words)]
        index += 1
    ids = tokenizer.encode(text)[:length]
    return tokenizer.decode(ids)


def torch_weight_bytes(generator: Any) -> int:
    """Bytes of the torch modules' parameters (tied ones once): the output head reads the whole token embedding."""
    unique = {id(p): p for module in generator.modules.values() for p in module.parameters()}
    return int(sum(np.prod(p.shape) * p.element_size() for p in unique.values()))


def bench_text(context: BenchContext) -> list[TextRow]:
    """The text kind's benchmark: the driver's peer (when it offers one), genloom's torch path (when benched from a
    trained model) and each ONNX Runtime path, at batch 1 and 8, beside the memory-bandwidth roof."""
    peer = None
    offers = isinstance(context.driver, OffersBenchmarkPeer)
    try:
        peer = context.driver.benchmark_peer(context.paths[0].model, context.cuda) if offers else None
        missing = f"the '{context.driver.name}' driver names no peer"
    except ImportError as absent:
        missing = f"{absent.name or 'transformers'} is not installed (the peer is transformers on torch)"
    if peer is None:
        context.peer_unavailable.append(f"{context.name}: peer unavailable: {missing}")
    decoders = []
    if context.torch_model is not None:
        decoders.append(
            genloom_decoder(
                "genloom torch", context.torch_model, torch_weight_bytes(context.torch_model.generator), on_cpu=True
            )
        )
    decoders += [genloom_decoder(p.label, p.model, weight_bytes_read(p.graph_file), p.on_cpu) for p in context.paths]
    return text_rows(
        context.name,
        peer,
        decoders,
        lambda: read_bandwidth(context.repeats),
        context.tokens,
        context.batches or TEXT_BATCHES,
        context.repeats,
    )
