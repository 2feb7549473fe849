"""A loaded model, as apps use it: ``genloom.load(DIR).generate(...)``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest, artifact_id
from genloom.config import validate_model
from genloom.errors import ConfigError
from genloom.generator import Generator
from genloom.results import ImageResult, Provenance, TextResult
from genloom.sampling import ImageSampling, TextSampling


class LoadedModel:
    """What every loaded model has, whichever backend runs it: its directory, manifest, identity and description."""

    backend: str = ""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory = directory
        self.manifest = manifest
        self.artifact_sha256 = artifact_id(directory)

    @property
    def device(self) -> str:
        """Where it runs (``cpu``, or the ONNX Runtime execution provider)."""
        return "cpu"

    @property
    def conditional(self) -> bool:
        """Whether ``generate`` takes class labels (``labels=[...]``)."""
        return False

    def _calls(self) -> list[str]:
        """The calls it offers besides ``info``."""
        return ["generate"]

    def info(self) -> dict[str, Any]:
        """What this model is: generator, plugin, config, facts, training summary, and where it runs."""
        return {
            "path": str(self.directory),
            "backend": self.backend,
            "device": self.device,
            "artifact_sha256": self.artifact_sha256,
            "operations": self._calls(),
            **self.manifest.model_dump(mode="json", exclude={"files"}),
        }

    def _provenance(self, seed: int | None, settings: dict[str, Any]) -> Provenance:
        manifest = self.manifest
        return Provenance(manifest.generator, manifest.plugin, manifest.plugin_version, self.artifact_sha256, seed, settings)


class TorchModel(LoadedModel):
    """A trained generator run in PyTorch. Safe to share between threads for generation."""

    backend = "torch"

    def __init__(self, generator: Generator, manifest: Manifest, directory: Path) -> None:
        super().__init__(directory, manifest)
        self.generator = generator

    @property
    def conditional(self) -> bool:
        return self.generator.capabilities.conditional

    def generate(self, **settings: Any) -> ImageResult | TextResult:
        """Generate with the modality's settings: ``generate(n=16, seed=0, labels=[3])`` for images,
        ``generate(prompt="Once", max_new_tokens=50, do_sample=True, top_p=0.9, seed=0)`` for text."""
        from genloom.training import inference

        if self.generator.modality == "text":
            request = validate_model(TextSampling, settings, what="sampling settings")
            with inference(self.generator):
                decoded = self.generator.sample(request)
            return TextResult(decoded.texts, decoded.tokens, self._provenance(request.seed, request.model_dump()))
        image_request = validate_model(ImageSampling, settings, what="sampling settings")
        self.generator.resolve_labels(image_request.labels, image_request.n)
        with inference(self.generator):
            array = self.generator.sample(image_request)
        return ImageResult(array.transpose(0, 2, 3, 1).copy(), self._provenance(image_request.seed, image_request.model_dump()))

    def stream(self, **settings: Any) -> Iterator[str]:
        """Yield generated text piece by piece as it is decoded (text models; one prompt)."""
        if not self.generator.capabilities.streamable:
            raise ConfigError(f"'{self.generator.name}' does not stream; use generate()")
        request = validate_model(TextSampling, settings, what="sampling settings")
        from genloom.training import inference

        with inference(self.generator):
            yield from self.generator.stream(request)

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

    def _calls(self) -> list[str]:
        return ["generate", *type(self.generator).operations]
