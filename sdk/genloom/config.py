"""Generator configs: pydantic models that are the single source of truth for every knob.

A generator's ``Config`` subclasses :class:`GeneratorConfig`. Its JSON schema
(``genloom schema NAME``) documents the knobs; validation errors become one
:class:`~genloom.errors.ConfigError` that names the field and what it accepts.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genloom.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
"""What a registered name (generator, data kind) may be: lower case, digits, '-' and '_'."""


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown fields, for every user-facing option set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorConfig(StrictModel):
    """Knobs every generator has: how long and how the shared training loop runs.

    Plugins subclass this, add their own fields (each with a description) and may
    change the defaults below to suit their model. Float fields refuse NaN and
    infinity (``gp_weight=Infinity`` is a ConfigError, not a diverged run).
    """

    model_config = ConfigDict(allow_inf_nan=False)

    steps: int = Field(1000, ge=1, description="Optimisation steps to train for.")
    batch_size: int = Field(64, ge=1, description="Examples per training step.")
    seed: int = Field(0, ge=0, description="Seed for weights, batches and noise; same seed, same model.")
    log_every: int = Field(10, ge=1, description="Append losses to metrics.jsonl every N steps.")
    eval_every: int = Field(0, ge=0, description="Run the generator's evaluation every N steps (0: only at the end).")
    checkpoint_every: int = Field(
        100, ge=0, description="Write a resumable checkpoint every N steps (0: only at the end)."
    )
    sample_every: int = Field(
        0, ge=0, description="Write samples (e.g. an image grid) every N steps (0: only at the end)."
    )
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="Stop when the generator's monitored validation figure has not improved for N evaluations (0: "
        "never).",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the data held out from training for evaluation (the same split every run).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="Arithmetic of the training steps: fp32; bf16 autocast (CPU and CUDA); fp16 autocast with loss "
        "scaling (CUDA only). Weights are saved in float32 either way.",
    )


def validate_model(model_cls: type[ModelT], values: Mapping[str, Any], *, what: str) -> ModelT:
    """Build ``model_cls`` from ``values``; turn a ValidationError into one clear ConfigError.

    ``what`` names the thing being configured in the message, e.g. ``"config of 'gan'"``.
    """
    try:
        return model_cls.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model_cls, what=what)) from None


def describe_validation_error(exc: ValidationError, model_cls: type[BaseModel], *, what: str) -> str:
    """One line per problem: the field, what is wrong, what it accepts."""
    known = list(model_cls.model_fields)
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(root)"
        if error["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(field, known, n=1)
            suggestion = f"did you mean '{hint[0]}'? " if hint else ""
            problems.append(f"unknown field '{field}' ({suggestion}known fields: {', '.join(known)})")
        elif not error["loc"]:  # a check across fields: its message names them
            problems.append(error["msg"].removeprefix("Value error, "))
        else:
            got = error.get("input")
            problems.append(f"field '{field}': {error['msg']} (got {got!r})")
    return f"invalid {what}: " + "; ".join(problems)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse CLI ``key=value`` pairs; values are JSON where they parse (``3``, ``0.5``, ``[1,2]``), else strings."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r} (for example --set steps=200)")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values
