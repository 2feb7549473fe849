"""The ``text`` kind: prompts in, texts and their token ids out; written to stdout, compared token by token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genloom.data.types import TextData
from genloom.fileio import atomic_write_text
from genloom.kinds import DataKind
from genloom.results import Provenance, TextResult
from genloom.sampling import TextSampling

SEPARATOR = "----"
"""The line between two generated texts."""


def make_result(decoded: Any, provenance: Provenance) -> TextResult:
    """A :class:`genloom.textgen.Decoded` (texts and new token ids) -> a :class:`TextResult`."""
    return TextResult(list(decoded.texts), [list(tokens) for tokens in decoded.tokens], provenance)


def write(result: TextResult, out: Path | None) -> str:
    """The texts, one after the other with a ``----`` line between them: on stdout, or in the UTF-8 file ``out``."""
    text = f"\n{SEPARATOR}\n".join(result.texts) + "\n"
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return ""
    atomic_write_text(Path(out), text)
    return f"wrote {len(result.texts)} texts to {out}"


def compare(first: TextResult, second: TextResult) -> float:
    """0.0 when both decoded the same tokens, else the share of sequences that differ."""
    sequences = max(len(first.tokens), len(second.tokens), 1)
    # zip stops at the shorter: the sequences one has beyond the other count apart, as different.
    differing = sum(a != b for a, b in zip(first.tokens, second.tokens, strict=False))
    differing += abs(len(first.tokens) - len(second.tokens))
    return differing / sequences


def to_json(result: TextResult) -> dict[str, Any]:
    """``{"texts": [...], "tokens": [[...], ...]}``."""
    return {"texts": result.texts, "tokens": result.tokens}


def evaluate(
    model: Any, data: TextData, train: TextData, validation: TextData | None, *, samples: int, seed: int
) -> dict[str, Any]:
    """A character-bigram model's bits per byte on the held-out text, the baseline to beat."""
    from genloom.evaluation.baselines import char_bigram_bits_per_byte

    if validation is None:
        return {}
    return {"baselines": {"char_bigram_bits_per_byte": char_bigram_bits_per_byte(train.text, validation.text)}}


def bench(context: Any) -> dict[str, Any]:
    """Tokens/s at batch 1 and 8 and prefill latency: the driver's peer, genloom's torch path and each ONNX Runtime
    path."""
    from genloom.bench.text import bench_text

    return {"text": bench_text(context)}


TEXT = DataKind(
    name="text",
    dataset=TextData,
    sampling=TextSampling,
    result=TextResult,
    make_result=make_result,
    write=write,
    compare=compare,
    to_json=to_json,
    check_settings={"prompt": ["The", "A somewhat longer prompt"], "max_new_tokens": 8},
    variant_check_settings={
        "prompt": ["The", "def f(x):", "Return the value of", "A list of", "import"],
        "max_new_tokens": 64,
        "min_new_tokens": 64,
    },
    description="UTF-8 text; prompts in, texts out (stdout)",
    sample_suffix=".txt",
    training_samples={"prompt": "", "max_new_tokens": 64, "do_sample": True, "top_k": 40, "num_return_sequences": 3},
    count_field="num_return_sequences",
    evaluate=evaluate,
    bench=bench,
    bench_variants=("int8", "q8"),
)
