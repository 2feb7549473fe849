"""The conformance kit catches what a plugin author gets wrong, and runs the real export of exportable generators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import genloom
from genloom.testing import check_generator


class Brightened(genloom.ImageGenerator):
    """A tiny image generator whose ``fit_data`` learns a brightness that ``save`` forgets (not in ``facts``)."""

    name = "brightened"
    modality = "image"

    def __init__(self, config: genloom.GeneratorConfig) -> None:
        super().__init__(config)
        self.brightness = 1.0

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        self.brightness = float(data.images.mean())

    def build(self) -> dict[str, Any]:
        import torch

        return {"net": torch.nn.Linear(4, self.facts["height"] * self.facts["width"])}

    def configure_optimizers(self) -> dict[str, Any]:
        import torch

        return {"net": torch.optim.SGD(self.modules["net"].parameters(), lr=0.01)}

    def train_step(self, batch: Any, optimizers: dict[str, Any], step: int) -> dict[str, float]:
        loss = self.modules["net"](batch[0].flatten(1)[:, :4]).square().mean()
        optimizers["net"].zero_grad()
        loss.backward()
        optimizers["net"].step()
        return {"loss": loss.item()}

    def sample(self, settings: genloom.ImageSampling) -> Any:
        import torch

        latents = torch.from_numpy(settings.rng().standard_normal((settings.n, 4), dtype=np.float32))
        flat = torch.sigmoid(self.modules["net"](latents)) * self.brightness
        return flat.reshape(settings.n, 1, self.facts["height"], self.facts["width"]).numpy()


class Remembered(Brightened):
    """The same, done right: the brightness travels in ``facts``."""

    name = "remembered"

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        self.facts["brightness"] = self.brightness

    def restore(self, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        super().restore(facts, files)
        self.brightness = facts["brightness"]


def test_state_that_save_drops_fails_the_kit(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="save -> load changed the output"):
        check_generator(Brightened, data="digits", workdir=tmp_path, batch_size=8)


def test_state_that_travels_in_facts_passes_the_kit(tmp_path: Path) -> None:
    check_generator(Remembered, data="digits", workdir=tmp_path, batch_size=8)


@pytest.mark.timeout(300)
def test_the_kit_exports_an_exportable_generator_and_loads_it_without_torch(tmp_path: Path) -> None:
    from genloom_gan import DCGAN

    check_generator(DCGAN, data="digits", workdir=tmp_path, width=8, latent_dim=8, batch_size=16, sample_every=0)
    assert (tmp_path / "export-gan" / "onnx" / "manifest.json").is_file()
    assert (tmp_path / "export-gan" / "onnx.json").is_file()  # written by the process that could not import torch
