"""Kinds of data: what a generator trains on and what it makes (image, text, or one a plugin adds).

A kind is registered through the ``register_data_kinds`` hook, exactly like a
generator, and the core knows no kind by name: the built-in ``image`` and
``text`` kinds register from :mod:`genloom.kinds.builtin` the way a third
party's would. Everything the SDK does with a result goes through the kind:
validating ``generate(**settings)``, wrapping what ``Generator.sample`` returns,
writing it to files for the CLI and during training, comparing two results (the
exporter's end-to-end check), and, when the kind offers them, its evaluation and
its benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from genloom.config import NAME_PATTERN
from genloom.data.types import Dataset
from genloom.errors import PluginError
from genloom.results import Provenance

if TYPE_CHECKING:
    from genloom.bench.context import BenchContext

SettingsT = TypeVar("SettingsT", bound=BaseModel, default=Any)
"""The kind's sampling settings."""
OutputT = TypeVar("OutputT", default=Any)
"""What a generator's ``sample`` (or a runtime driver) produces for the kind."""
ResultT = TypeVar("ResultT", default=Any)
"""The kind's result: what ``generate`` returns to users."""

ResultWriter = Callable[[ResultT, "Path | None"], str]
"""``write(result, out)``: write ``result`` to ``out`` (``None``: the kind's default, e.g. stdout for text) and return
the line the CLI prints about it (empty for none). ``out`` was checked before generation started."""


@dataclass(frozen=True)
class DataKind(Generic[SettingsT, OutputT, ResultT]):
    """One kind of data, as a plugin registers it with ``register(DataKind(...))``.

    Its type parameters are its sampling settings, what generators produce, and its result (the image kind is a
    ``DataKind[ImageSampling, np.ndarray, ImageResult]``); a type checker then checks the callables against them.
    """

    name: str
    """Lower-case name; generators declare it as their ``modality``, data sources as theirs."""
    dataset: type[Dataset]
    """The class of its training data: what its data sources return, with the members of
    :class:`genloom.data.Dataset` (``modality`` is this name)."""
    sampling: type[SettingsT]
    """Its sampling settings: ``generate(**settings)`` is validated against this model before a generator sees it."""
    result: type[ResultT]
    """The class ``generate`` returns."""
    make_result: Callable[[OutputT, Provenance], ResultT]
    """``make_result(output, provenance)``: what ``Generator.sample`` (or a runtime driver) produced -> a ``result``."""
    write: ResultWriter[ResultT]
    """How the CLI (``genloom generate --out``) and training (samples every ``sample_every`` steps) write a result."""
    compare: Callable[[ResultT, ResultT], float]
    """``compare(a, b)``: how far apart two results of the same request are (0.0: the same). The exporter's
    end-to-end check and the conformance kit require at most 1e-4 between PyTorch and the export."""
    check_settings: Mapping[str, object]
    """Settings the end-to-end checks generate with (small, seeded)."""
    to_json: Callable[[ResultT], object]
    """A result's JSON form (lists, numbers, strings): what a server answers, and how the conformance kit compares
    an export run in a process without torch with PyTorch's result."""
    forms: Mapping[str, Callable[[ResultT], object]] = field(default_factory=dict)
    """Other JSON forms of a result, by name, that a server answers on request (``/v1/generate/{model}?form=NAME``):
    compact ones, such as base64 PNGs for images."""
    description: str = ""
    default_out: str | None = None
    """``--out`` when the user gives none (``None``: the writer's own default, e.g. stdout)."""
    out_is_directory: bool = False
    """``--out`` is a folder (clips, say) rather than one file, unless it ends in ``sample_suffix`` (the one-file form
    that training's samples take); it is checked as such before generating."""
    check_out: Callable[[Path], None] | None = None
    """``check_out(out)``: refuse (a ConfigError) an ``--out`` the writer cannot write, such as a suffix it does not
    know, before generating; None: any file (or folder) will do."""
    sample_suffix: str = ".txt"
    """File suffix of the samples written during training (``.png``, ``.txt``, ``.csv`` ...)."""
    training_samples: Mapping[str, object] = field(default_factory=dict)
    """Settings of the samples written during training; the run's ``seed`` is added. A generator may override them
    (``Generator.training_samples``)."""
    count_field: str | None = None
    """The sampling field that ``genloom generate -n`` sets (``n`` for images)."""
    evaluate: Callable[..., Mapping[str, object]] | None = None
    """``evaluate(model, data, train, validation, samples=, seed=)``: the kind's own ``genloom eval`` figures (``data``
    the whole source, ``train``/``validation`` its fixed split; ``validation`` may be None), as fields of
    :class:`genloom.evaluation.EvalReport`; None when the kind offers only the generator's held-out figures."""
    report: Callable[..., None] | None = None
    """``report(model, data, train, validation, out, *, seed)``: draw the model's samples beside real data in a PNG at
    ``out`` (``genloom eval --report``); None when the kind draws none."""
    variant_check_settings: Mapping[str, object] | None = None
    """Settings to compare each precision variant of an export with fp32 (what its ``agreement_with_fp32`` counts);
    None where the kind records only the variants' error figures."""
    bench_variants: tuple[str, ...] = ()
    """Precision variants ``genloom bench`` exports and times besides fp32 on the CPU (``int8``); fp16 is added on
    CUDA."""
    bench_batches: tuple[int, ...] = ()
    """Counts (``count_field``) the generic ``genloom bench`` rows time; empty: 1 and 64."""
    bench: Callable[[BenchContext], Mapping[str, object]] | None = None
    """``bench(context)``: the kind's own rows for ``genloom bench`` (see :mod:`genloom.bench.run`); None: the
    generic outputs/s rows."""

    def check(self) -> None:
        """Raise PluginError unless the declaration is usable."""
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise PluginError(f"a data kind's name must be lower-case letters, digits, '-' or '_', got {self.name!r}")
        if not (isinstance(self.sampling, type) and issubclass(self.sampling, BaseModel)):
            raise PluginError(
                f"data kind '{self.name}': sampling must be a pydantic model class, got {self.sampling!r}"
            )
        if self.count_field is not None and self.count_field not in self.sampling.model_fields:
            raise PluginError(
                f"data kind '{self.name}': count_field '{self.count_field}' is not a field of {self.sampling.__name__}"
            )
        for form, encode in self.forms.items():
            if not (isinstance(form, str) and NAME_PATTERN.match(form) and callable(encode)):
                raise PluginError(f"data kind '{self.name}': forms maps lower-case names to callables, got {form!r}")
        self.sampling.model_validate(dict(self.check_settings))
