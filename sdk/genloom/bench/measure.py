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


def time_call(call: Callable[[], object], repeats: int = 5, warmup: int = 2) -> Timing:
    """Time ``call``: ``warmup`` runs first (caches, allocators, lazy init), then ``repeats`` measured runs."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return Timing(median=statistics.median(seconds), low=min(seconds), high=max(seconds), repeats=repeats)
