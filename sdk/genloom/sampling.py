"""Sampling settings, validated before a generator sees them."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from genloom.config import StrictModel
from genloom.errors import ConfigError


class ImageSampling(StrictModel):
    """How many images to make, from which seed, for which classes."""

    n: int = Field(16, ge=1, le=65536, description="Number of images.")
    seed: int | None = Field(None, ge=0, description="Seed of the latents; the same seed gives the same images.")
    labels: list[int] | None = Field(
        None, min_length=1, description="Class labels (conditional generators), repeated in turn to fill n images."
    )

    def rng(self) -> np.random.Generator:
        """The numpy generator to draw latents from (fresh entropy when ``seed`` is None)."""
        return np.random.default_rng(self.seed)


class TextSampling(StrictModel):
    """Text generation settings, with the names and defaults of Hugging Face ``generate()``."""

    prompt: str | list[str] = Field("", description="One prompt, or a batch of prompts of any lengths.")
    max_new_tokens: int = Field(64, ge=1, le=1_000_000, description="Tokens to generate at most, per sequence.")
    min_new_tokens: int = Field(
        0, ge=0, description="Tokens to generate at least: end of text is not chosen before (stop strings still stop)."
    )
    do_sample: bool = Field(False, description="Sample from the distribution (False: greedy decoding).")
    temperature: float = Field(1.0, allow_inf_nan=False, description="Divide the logits by this before sampling (> 0).")
    top_k: int | None = Field(50, ge=1, description="Sample only among the k most likely tokens (None: all).")
    top_p: float = Field(
        1.0,
        allow_inf_nan=False,
        description="Sample only among the most likely tokens whose probabilities add up to top_p, in (0, 1].",
    )
    repetition_penalty: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="Penalise tokens already in the sequence (1.0: off; 1.2 is common)."
    )
    num_return_sequences: int = Field(1, ge=1, le=1024, description="Sequences to generate per prompt.")
    seed: int | None = Field(None, ge=0, description="Seed of the sampling; the same seed gives the same text.")
    stop: list[str] | None = Field(
        None, description="Stop a sequence when it produces one of these strings (not included)."
    )

    @model_validator(mode="after")
    def _check_knobs(self) -> TextSampling:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 when do_sample=True (got {self.temperature}); use do_sample=False for greedy "
                "decoding"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.stop is not None and not all(self.stop):
            raise ValueError("stop strings must not be empty")
        _check_utf8("prompt", self.prompts)
        _check_utf8("stop", self.stop or [])
        return self

    @property
    def prompts(self) -> list[str]:
        """The prompts as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def rng(self, sequence: int) -> np.random.Generator:
        """The numpy generator of the ``sequence``-th return sequence of a prompt; independent of the batch it is in."""
        return np.random.default_rng(None if self.seed is None else [self.seed, sequence])


def _check_utf8(field: str, texts: list[str]) -> None:
    """Refuse text that UTF-8 cannot encode: lone surrogates, which is how Python passes on command-line bytes
    that are not UTF-8 (byte 0xff arrives as U+DCFF)."""
    for number, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            which = field if len(texts) == 1 else f"{field} {number + 1}"
            code = ord(text[exc.start])
            what = (
                f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"{text[exc.start]!r}, a lone surrogate,"
            )
            raise ValueError(
                f"{which}: not valid UTF-8 text ({what} at character {exc.start}); give UTF-8 text"
            ) from None


def resolve_labels(
    labels: list[int] | None, n: int, *, num_classes: int, conditional: bool, generator: str, required: bool = False
) -> np.ndarray | None:
    """The class label of each of ``n`` outputs, or None for an unconditional model.

    ``labels`` repeat in turn to fill ``n``; None means every class in turn (an
    error when ``required``). A label outside the trained classes, or labels for
    an unconditional model, is a :class:`ConfigError` that says what to pass.
    """
    if not conditional:
        if labels is not None:
            raise ConfigError(f"'{generator}' is unconditional; drop labels (it was not trained to follow them)")
        return None
    if labels is None:
        if required:
            raise ConfigError(
                f"labels: '{generator}' needs the class of each image; pass labels=[...] with values "
                f"0..{num_classes - 1}"
            )
        labels = list(range(num_classes))
    chosen = list(labels)
    wrong = [label for label in chosen if not 0 <= label < num_classes]
    if wrong or not chosen:
        raise ConfigError(
            f"labels: {wrong[0] if wrong else 'an empty list'} is not a trained class; use 0..{num_classes - 1}"
        )
    return np.array([chosen[i % len(chosen)] for i in range(n)], dtype=np.int64)
