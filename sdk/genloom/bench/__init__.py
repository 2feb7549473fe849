"""``genloom bench``: :func:`genloom.bench.run.bench_artifact` and its :class:`genloom.bench.run.BenchReport`.

The package imports nothing itself, so that a kind's benchmark (``genloom.bench.images``, ``genloom.bench.text``)
imports only the measuring modules it uses.
"""
