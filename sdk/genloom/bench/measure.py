"""Timing that survives noise: warm up first, repeat, report the median and the spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from pydantic import BaseModel, Field


class Timing(BaseModel):
    """Seconds per call over ``repeats`` timed calls, after ``warmup`` untimed ones."""

    median: float = Field(description="Median seconds per call.")
    low: float = Field(description="Fastest call, seconds.")
    high: float = Field(description="Slowest call, seconds.")
    repeats: int


SETTLE_SECONDS = 0.2
"""Pause before each measurement: the previous one's worker threads spin on after it (OpenBLAS for tens of
milliseconds, measured: ONNX Runtime's matmul ran at half speed in that window) and would slow this one."""


def time_call(call: Callable[[], object], repeats: int = 5, warmup: int = 2) -> Timing:
    """Time ``call``: a pause for the machine to settle, ``warmup`` runs (caches, allocators, lazy init),
    then ``repeats`` measured runs."""
    time.sleep(SETTLE_SECONDS)
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return Timing(median=statistics.median(seconds), low=min(seconds), high=max(seconds), repeats=repeats)
