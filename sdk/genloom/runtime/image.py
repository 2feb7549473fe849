"""Image exports run with ONNX Runtime: latents drawn by numpy exactly as the torch path draws them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.results import ImageResult
from genloom.runtime.base import OnnxModel
from genloom.runtime.providers import Providers
from genloom.sampling import ImageSampling, resolve_labels


class OnnxImageModel(OnnxModel):
    """An exported image generator (driver ``image-from-latent``). One session per graph, shared by all threads."""

    def __init__(self, directory: Path, manifest: Manifest, providers: Providers = "auto", session_options: Any = None,
                 precision: str = "fp32") -> None:
        super().__init__(directory, manifest)
        self.sessions = {g["name"]: self.open_graph(g["name"], providers, session_options, precision) for g in self.export["graphs"]}
        self.onnx = self.sessions[self.export["graphs"][0]["name"]]  # the graph that generates
        self.input_names = [i.name for i in self.onnx.get_inputs()]
        self.latent_dim = int(self.onnx.get_inputs()[0].shape[1])

    def generate(self, **settings: Any) -> ImageResult:
        """The same call as the torch path: ``generate(n=16, seed=0, labels=[3])``; same seed, same latents."""
        request = validate_model(ImageSampling, settings, what="sampling settings")
        facts = self.manifest.facts
        labels = resolve_labels(request.labels, request.n, num_classes=int(facts.get("num_classes", 0)),
                                conditional="labels" in self.input_names, generator=self.manifest.generator)
        latents = request.rng().standard_normal((request.n, self.latent_dim), dtype=np.float32)
        feeds = {"latents": latents, **({"labels": labels} if labels is not None else {})}
        (images,) = self.onnx.run(["images"], feeds)
        return ImageResult(images.transpose(0, 2, 3, 1).copy(), self._provenance(request.seed, request.model_dump()))
