"""Tokens/s of text decoding with the KV cache (or LSTM state) against recomputing the whole prefix each step.

    python benchmarks/text_cache.py MODEL_DIR [--tokens 120] [--repeats 3]

Greedy decoding at batch 1 from an empty prompt, with ``min_new_tokens`` so that
every run makes exactly ``--tokens`` tokens. Each way is warmed up once, then
timed ``--repeats`` times; the median is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

import genloom
from genloom.generator import inference
from genloom.sampling import TextSampling
from genloom.textgen import generate
from genloom_text.sessions import RecomputingSession


@dataclass
class Measured:
    """The model's tokenizer and context, decoding with its own cache or by recomputing."""

    generator: Any
    recompute: bool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def session(self) -> Any:
        return RecomputingSession(self.generator.network) if self.recompute else self.generator.session()


def tokens_per_second(model: Any, settings: TextSampling, repeats: int) -> tuple[float, int]:
    generate(model, settings)  # warm-up
    rates, made = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        made = sum(len(t) for t in generate(model, settings).tokens)
        rates.append(made / (time.perf_counter() - started))
    return statistics.median(rates), made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generator = genloom.load(args.model_dir).generator
    limit = generator.context_length - 1 if generator.context_length else args.tokens
    settings = TextSampling(prompt="", max_new_tokens=min(args.tokens, limit), min_new_tokens=min(args.tokens, limit))
    print(
        f"{generator.name} ({sum(p.numel() for p in generator.network.parameters()):,} parameters), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, greedy, batch 1"
    )
    with inference(generator):
        for label, model in (("with cache", Measured(generator, False)), ("recomputing", Measured(generator, True))):
            rate, made = tokens_per_second(model, settings, args.repeats)
            print(f"  {label:<12} {rate:8.1f} tokens/s  ({made} tokens per run, median of {args.repeats})")


if __name__ == "__main__":
    main()
