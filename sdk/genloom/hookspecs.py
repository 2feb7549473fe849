"""The hooks a genloom plugin implements.

A plugin is a module (or object) with functions marked ``@genloom.hookimpl``,
named after the hooks below, and registered through the ``genloom`` entry-point
group. Each hook receives a ``register`` callable, in the style of the ``llm``
project, and calls it once per thing it provides::

    import genloom

    @genloom.hookimpl
    def register_generators(register):
        register(MyGenerator)

Hooks are versioned with the genloom package: a hook is only ever added, and
its signature never changes within a major version. A plugin that implements a
hook name not listed here is rejected with its name and the unknown hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from genloom.contracts import Exporter, RuntimeDriver
    from genloom.data.types import DataSource
    from genloom.generator import Generator
    from genloom.kinds import DataKind

PROJECT_NAME = "genloom"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_data_kinds(register: Callable[[DataKind[Any, Any, Any]], None]) -> None:
    """Register kinds of data: call ``register(genloom.kinds.DataKind(...))`` for each kind (its dataset,
    sampling-settings and result classes, and how a result is written, compared, evaluated and benchmarked).
    Generators, data sources and runtime drivers name a registered kind."""


@hookspec
def register_generators(register: Callable[[type[Generator[Any, Any, Any]]], None]) -> None:
    """Register generator classes: call ``register(cls)`` for each subclass of
    :class:`genloom.Generator` the plugin provides. Names must be unique across
    all installed plugins."""


@hookspec
def register_data_sources(register: Callable[[DataSource], None]) -> None:
    """Register data sources: call ``register(genloom.data.DataSource(...))`` for each.
    ``--data NAME`` or ``--data NAME:ARGUMENT`` selects one by name."""


@hookspec
def register_exporters(register: Callable[[Exporter], None]) -> None:
    """Register exporters: call ``register(exporter)`` with an object that follows
    :class:`genloom.contracts.Exporter` (``name``, ``produces``, ``description``, ``options`` and
    ``export(model_dir, out_dir, **options)``)."""


@hookspec
def register_runtime_drivers(register: Callable[[RuntimeDriver], None]) -> None:
    """Register runtime drivers: call ``register(driver)`` with an object that follows
    :class:`genloom.contracts.RuntimeDriver`: a unique ``name``, the ``kind`` of data it
    makes, the graph ``inputs``/``outputs`` and ``options`` it needs, and
    ``open(directory, manifest, providers, session_options, precision)`` (for example
    image-from-latent, or autoregressive text with a KV cache). It must not import torch."""
