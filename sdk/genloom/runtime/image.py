"""Image exports run with ONNX Runtime: latents drawn by numpy exactly as the torch path draws them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest, artifact_id
from genloom.config import validate_model
from genloom.results import ImageResult, Provenance
from genloom.runtime.providers import Providers, create_session, graph_file
from genloom.sampling import ImageSampling, resolve_labels


class OnnxImageModel:
    """An exported image generator (driver ``image-from-latent``). One session per graph, shared by all threads."""

    def __init__(self, directory: Path, manifest: Manifest, providers: Providers = "auto", session_options: Any = None,
                 precision: str = "fp32") -> None:
        self.directory, self.manifest = directory, manifest
        self.artifact_sha256 = artifact_id(directory)
        export = manifest.export or {}
        self.sessions = {g["name"]: create_session(str(directory / graph_file(export, g["name"], precision)), providers, session_options)
                         for g in export["graphs"]}
        self.sampler = export["graphs"][0]["name"]
        sampler = self.sessions[self.sampler]
        self.input_names = [i.name for i in sampler.get_inputs()]
        self.latent_dim = int(sampler.get_inputs()[0].shape[1])

    @property
    def provider(self) -> str:
        """The execution provider the sessions run on (``CUDAExecutionProvider`` or ``CPUExecutionProvider``)."""
        return self.sessions[self.sampler].get_providers()[0]

    def generate(self, **settings: Any) -> ImageResult:
        """The same call as the torch path: ``generate(n=16, seed=0, labels=[3])``; same seed, same latents."""
        request = validate_model(ImageSampling, settings, what="sampling settings")
        facts = self.manifest.facts
        labels = resolve_labels(request.labels, request.n, num_classes=int(facts.get("num_classes", 0)),
                                conditional="labels" in self.input_names, generator=self.manifest.generator)
        latents = request.rng().standard_normal((request.n, self.latent_dim), dtype=np.float32)
        feeds = {"latents": latents, **({"labels": labels} if labels is not None else {})}
        (images,) = self.sessions[self.sampler].run(["images"], feeds)
        provenance = Provenance(self.manifest.generator, self.manifest.plugin, self.manifest.plugin_version,
                                self.artifact_sha256, request.seed, request.model_dump())
        return ImageResult(images.transpose(0, 2, 3, 1).copy(), provenance)

    def info(self) -> dict[str, Any]:
        """What this export is, and where it runs."""
        return {"path": str(self.directory), "backend": "onnxruntime", "device": self.provider, "provider": self.provider,
                "artifact_sha256": self.artifact_sha256, "operations": ["generate"],
                **self.manifest.model_dump(mode="json", exclude={"files"})}
