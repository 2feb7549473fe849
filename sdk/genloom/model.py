"""A loaded model, as apps use it: ``genloom.load(DIR).generate(...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest, artifact_id
from genloom.config import validate_model
from genloom.errors import ConfigError
from genloom.generator import Generator
from genloom.results import ImageResult, Provenance
from genloom.sampling import ImageSampling


class TorchModel:
    """A trained generator run in PyTorch. Safe to share between threads for generation."""

    def __init__(self, generator: Generator, manifest: Manifest, directory: Path) -> None:
        self.generator = generator
        self.manifest = manifest
        self.directory = directory
        self.artifact_sha256 = artifact_id(directory)

    def generate(self, **settings: Any) -> ImageResult:
        """Generate with the modality's sampling settings, e.g. ``generate(n=16, seed=0, labels=[3])``."""
        if self.generator.modality != "image":
            raise ConfigError(f"generation for {self.generator.modality} models is not available yet")
        request = validate_model(ImageSampling, settings, what="sampling settings")
        self._check_labels(request)
        from genloom.training import inference

        with inference(self.generator):
            array = self.generator.sample(request)
        return ImageResult(array.transpose(0, 2, 3, 1).copy(), self._provenance(request.seed, request.model_dump()))

    def info(self) -> dict[str, Any]:
        """What this model is: generator, plugin, config, facts, training summary, and where it runs."""
        return {
            "path": str(self.directory),
            "backend": "torch",
            "device": "cpu",
            "artifact_sha256": self.artifact_sha256,
            **self.manifest.model_dump(mode="json", exclude={"files"}),
        }

    def _check_labels(self, request: ImageSampling) -> None:
        classes = int(self.generator.facts.get("num_classes", 0))
        if request.labels is None:
            return
        if not self.generator.capabilities.conditional:
            raise ConfigError(f"'{self.generator.name}' is unconditional; drop labels (it was not trained to follow them)")
        wrong = [label for label in request.labels if not 0 <= label < classes]
        if wrong:
            raise ConfigError(f"labels: {wrong[0]} is not a trained class; use 0..{classes - 1}")

    def _provenance(self, seed: int | None, settings: dict[str, Any]) -> Provenance:
        manifest = self.manifest
        return Provenance(manifest.generator, manifest.plugin, manifest.plugin_version, self.artifact_sha256, seed, settings)
