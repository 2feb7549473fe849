"""Benchmarks: throughput of genloom's paths beside the peers and the machine's roofs (``genloom bench``)."""

from genloom.bench.run import BenchReport, bench_artifact

__all__ = ["BenchReport", "bench_artifact"]
