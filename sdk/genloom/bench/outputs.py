"""Outputs/s of a model of a kind without a benchmark of its own: every path through the public ``generate``."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, Field

from genloom.bench.context import BenchContext
from genloom.bench.measure import Timing, time_call

OUTPUT_BATCHES = (1, 64)


class OutputRow(BaseModel):
    """One way of generating, at one count of outputs per call."""

    model: str
    path: str = Field(description="'genloom torch', 'onnxruntime fp32', ...")
    batch: int = Field(description="Outputs per generate() call (the kind's count field).")
    outputs_per_second: float
    timing: Timing
    ratio_to_peer: float | None = Field(
        description="outputs/s over the model's own PyTorch path at the same count; None for an export."
    )


def bench_outputs(context: BenchContext, kind: Any) -> list[OutputRow]:
    """Time ``generate(**{kind.count_field: batch}, seed=0)`` (as far as the kind's settings have those fields) on the
    torch model (the reference) and each ONNX Runtime path."""
    count_field = kind.count_field
    seeded = {"seed": 0} if "seed" in kind.sampling.model_fields else {}
    paths = [("genloom torch", context.torch_model)] if context.torch_model is not None else []
    paths += [(path.label, path.model) for path in context.paths]
    if context.torch_model is None:
        context.peer_unavailable.append(
            f"{context.name}: peer unavailable: an export holds no torch model; bench the trained model's directory"
        )
    rows: list[OutputRow] = []
    for batch in context.batches or (kind.bench_batches or OUTPUT_BATCHES if count_field else (1,)):
        settings = {count_field: batch} if count_field else {}
        reference = None
        for label, model in paths:
            timing = time_call(functools.partial(model.generate, **seeded, **settings), repeats=context.repeats)
            rate = batch / timing.median
            reference = rate if model is context.torch_model else reference
            rows.append(
                OutputRow(
                    model=context.name,
                    path=label,
                    batch=batch,
                    outputs_per_second=rate,
                    timing=timing,
                    ratio_to_peer=rate / reference if reference else None,
                )
            )
    return rows
