"""genloom's tabular plugin: the ``table`` kind, the ``csv``, ``parquet``, ``penguins`` and ``diamonds`` sources, the
``ctgan``, ``tvae`` and ``copula`` generators and the ``table-from-noise`` runtime driver.

This module imports no torch: the networks load when a model is built.
"""

from collections.abc import Callable
from typing import Any

import genloom
from genloom.data import DataSource
from genloom.kinds import DataKind
from genloom_tabular.copula import GaussianCopula
from genloom_tabular.ctgan import CTGAN
from genloom_tabular.data import SOURCES
from genloom_tabular.kind import TABLE, TableResult, TableSampling
from genloom_tabular.runtime import TableFromNoise
from genloom_tabular.tvae import TVAE

__all__ = ["CTGAN", "TVAE", "GaussianCopula", "TableResult", "TableSampling"]


@genloom.hookimpl
def register_data_kinds(register: Callable[[DataKind], None]) -> None:
    register(TABLE)


@genloom.hookimpl
def register_data_sources(register: Callable[[DataSource], None]) -> None:
    for source in SOURCES:
        register(source)


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.Generator[Any, Any, Any]]], None]) -> None:
    register(CTGAN)
    register(TVAE)
    register(GaussianCopula)


@genloom.hookimpl
def register_runtime_drivers(register: Callable[[Any], None]) -> None:
    register(TableFromNoise())
