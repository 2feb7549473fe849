"""Which install profile is here: the runtime (exports only), the training one (``genloom[train]``), and whether
``genloom[serve]`` is there."""

from __future__ import annotations

import importlib.util

from genloom.errors import NotAvailableError


def require_training_install(what: str) -> None:
    """Raise a NotAvailableError naming ``what`` and the ``train`` extra when PyTorch is not installed.

    Call it before the work starts (and before any data is read): ``what`` begins the
    message, e.g. ``"genloom train gan"``. With torch installed it does nothing.
    """
    if importlib.util.find_spec("torch") is None:
        raise NotAvailableError(
            f"{what} needs PyTorch, which this install lacks (the runtime install runs exports only): "
            "pip install 'genloom[train]'"
        )


def require_serving_install() -> None:
    """Raise a NotAvailableError naming the ``serve`` extra when FastAPI, uvicorn or prometheus-client is missing."""
    missing = [name for name in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(name) is None]
    if missing:
        raise NotAvailableError(
            f"genloom serve needs {', '.join(missing)}, which this install lacks: pip install 'genloom[serve]'"
        )


def require_ray_install() -> None:
    """Raise a NotAvailableError naming the ``ray`` extra when Ray Serve is missing."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise NotAvailableError("genloom serve --ray needs Ray Serve, missing here: pip install 'genloom[ray]'")
