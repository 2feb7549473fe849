"""A loaded model, as apps use it: ``genloom.load(DIR).generate(...)``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
        self.generator.resolve_labels(request.labels, request.n)
        from genloom.training import inference

        with inference(self.generator):
            array = self.generator.sample(request)
        return ImageResult(array.transpose(0, 2, 3, 1).copy(), self._provenance(request.seed, request.model_dump()))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """The generator's extra operations (``Generator.operations``), e.g. a VAE's ``encode``."""
        generator = self.__dict__.get("generator")
        kind = type(generator).operations.get(name) if generator is not None else None
        if kind is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        method = getattr(generator, name)

        @functools.wraps(method)
        def operation(*args: Any, **kwargs: Any) -> Any:
            from genloom.training import inference

            with inference(generator):
                output = method(*args, **kwargs)
            if kind == "images":
                return ImageResult(np.asarray(output).transpose(0, 2, 3, 1).copy(), self._provenance(None, {"operation": name}))
            return output

        return operation

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *type(self.generator).operations})

    def info(self) -> dict[str, Any]:
        """What this model is: generator, plugin, config, facts, training summary, and where it runs."""
        return {
            "path": str(self.directory),
            "backend": "torch",
            "device": "cpu",
            "artifact_sha256": self.artifact_sha256,
            "operations": ["generate", *type(self.generator).operations],
            **self.manifest.model_dump(mode="json", exclude={"files"}),
        }

    def _provenance(self, seed: int | None, settings: dict[str, Any]) -> Provenance:
        manifest = self.manifest
        return Provenance(manifest.generator, manifest.plugin, manifest.plugin_version, self.artifact_sha256, seed, settings)
