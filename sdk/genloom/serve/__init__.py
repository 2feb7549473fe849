"""``genloom serve``: exports behind HTTP (FastAPI and uvicorn), on the runtime install plus ``genloom[serve]``.

:func:`genloom.serve.app.create_app` builds the app from loaded models and :class:`~genloom.serve.limits.ServerLimits`;
:func:`genloom.serve.server.serve` loads model directories and runs it with uvicorn. This package imports neither,
so that ``genloom.serve.limits`` reads without the ``serve`` extra.
"""
