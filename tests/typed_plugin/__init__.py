"""A third-party plugin written only against genloom's public API, type-checked strictly by the test command.

It is never installed or run: it exists so that mypy reads genloom's public types the way a plugin author's
editor does. A change to those types that would break an author's code (a renamed hook argument, a base whose
``sample`` loses its types, a kind whose callables stop being checked) fails the check. ``assert_type`` lines
hold the types the public bases must keep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, Field
from typing_extensions import Self, assert_type

import genloom
from genloom.textgen import Decoded, DecoderSession


class StubImageConfig(genloom.GeneratorConfig):
    """The knobs of the stub image generator."""

    width: int = Field(8, ge=1, description="Hidden units.")


class StubImageGenerator(genloom.ImageGenerator):
    """An image generator: one linear layer from noise to pixels."""

    name: ClassVar[str] = "typed-stub-image"
    Config: ClassVar[type[genloom.GeneratorConfig]] = StubImageConfig

    def build(self) -> dict[str, torch.nn.Module]:
        channels, size = int(self.facts["channels"]), int(self.facts["size"])
        return {"net": torch.nn.Linear(4, channels * size * size)}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.Adam(self.modules["net"].parameters())}

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        images, _labels = batch
        loss = self.modules["net"](torch.zeros(len(images), 4)).square().mean()
        optimizers["net"].zero_grad()
        loss.backward()
        optimizers["net"].step()
        return {"loss": float(loss)}

    def sample(self, settings: genloom.ImageSampling) -> np.ndarray:
        noise = torch.from_numpy(settings.rng().standard_normal((settings.n, 4)).astype(np.float32))
        pixels: np.ndarray = torch.sigmoid(self.modules["net"](noise)).numpy()
        size = int(self.facts["size"])
        return pixels.reshape(settings.n, -1, size, size)


class StubTextGenerator(genloom.TextGenerator):
    """A text generator that inherits the shared decoding loop; only the session is its own."""

    name: ClassVar[str] = "typed-stub-text"

    def build(self) -> dict[str, torch.nn.Module]:
        return {"net": torch.nn.Embedding(self.tokenizer.vocab_size, self.tokenizer.vocab_size)}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.SGD(self.modules["net"].parameters(), lr=0.1)}

    def get_batch(self, data: genloom.data.TextData, rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(self.tokenizer.encode_documents(data.text)[:16])

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        return {"loss": 0.0}

    def session(self) -> DecoderSession:
        raise NotImplementedError("the stub is only type-checked")


@dataclass
class Waves:
    """The training data of the stub's own kind: a batch of sequences."""

    values: np.ndarray
    source: str
    part: str = "all"
    modality: ClassVar[str] = "waves"

    def __len__(self) -> int:
        return len(self.values)

    def facts(self) -> dict[str, Any]:
        return {"length": int(self.values.shape[1])}

    def split(self, fraction: float) -> tuple[Self, Self | None]:
        cut = len(self.values) - int(len(self.values) * fraction)
        return self, None if cut == len(self.values) else type(self)(self.values[cut:], self.source, "validation")


class WavesSampling(BaseModel):
    """How many sequences to make, from which seed."""

    count: int = Field(4, ge=1)
    seed: int | None = None


@dataclass(frozen=True)
class WavesResult:
    """What users get from a model of the stub kind."""

    values: np.ndarray
    provenance: genloom.Provenance


def write_waves(result: WavesResult, out: Path | None) -> str:
    """Write the sequences as CSV."""
    target = out or Path("waves.csv")
    np.savetxt(target, result.values, delimiter=",")
    return f"wrote {target}"


WAVES = genloom.DataKind[WavesSampling, np.ndarray, WavesResult](
    name="waves",
    dataset=Waves,
    sampling=WavesSampling,
    result=WavesResult,
    make_result=WavesResult,
    write=write_waves,
    compare=lambda first, second: float(np.abs(first.values - second.values).max()),
    check_settings={"count": 2, "seed": 0},
    to_json=lambda result: result.values.tolist(),
    count_field="count",
)


class StubWavesGenerator(genloom.Generator[WavesSampling, np.ndarray, Waves]):
    """A generator of the stub's own kind: noise scaled by the data's spread."""

    name: ClassVar[str] = "typed-stub-waves"
    modality: ClassVar[str] = "waves"

    def fit_data(self, data: Waves) -> None:
        self.facts = {**data.facts(), "spread": float(data.values.std())}

    def build(self) -> dict[str, torch.nn.Module]:
        return {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def get_batch(self, data: Waves, rng: np.random.Generator) -> np.ndarray:
        return data.values[rng.integers(len(data), size=self.config.batch_size)]

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        return {}

    def sample(self, settings: WavesSampling) -> np.ndarray:
        rng = np.random.default_rng(settings.seed)
        return rng.standard_normal((settings.count, int(self.facts["length"]))) * float(self.facts["spread"])


def open_waves(argument: str | None) -> Waves:
    """The ``waves`` data source: sines of a few frequencies."""
    steps = np.linspace(0.0, 1.0, 32)
    return Waves(np.stack([np.sin(2 * np.pi * k * steps) for k in range(1, 9)]), source="waves")


@genloom.hookimpl
def register_data_kinds(register: Callable[[genloom.DataKind[Any, Any, Any]], None]) -> None:
    register(WAVES)


@genloom.hookimpl
def register_generators(register: Callable[[type[genloom.AnyGenerator]], None]) -> None:
    register(StubImageGenerator)
    register(StubTextGenerator)
    register(StubWavesGenerator)


@genloom.hookimpl
def register_data_sources(register: Callable[[genloom.DataSource], None]) -> None:
    register(genloom.DataSource("waves", open_waves, "sines of a few frequencies", modality="waves"))


def typed_calls(image: StubImageGenerator, text: StubTextGenerator, waves: StubWavesGenerator) -> None:
    """What a type checker infers for the public calls (checked, never run)."""
    assert_type(image.sample(genloom.ImageSampling(n=2)), np.ndarray)
    assert_type(text.sample(genloom.TextSampling(prompt="a")), Decoded)
    assert_type(waves.sample(WavesSampling(count=2)), np.ndarray)
    model = genloom.load("models/digits-gan")
    assert_type(model, genloom.LoadedModel)
    assert_type(WAVES.make_result(np.zeros((2, 4)), model.provenance(0, {})), WavesResult)
