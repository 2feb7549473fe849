"""Image exports run with ONNX Runtime: latents drawn by numpy exactly as the torch path draws them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.errors import ArtifactError
from genloom.results import ImageResult
from genloom.runtime.base import BatchPart, OnnxModel
from genloom.runtime.providers import Providers
from genloom.sampling import ImageSampling, resolve_labels


class ImageFromLatent:
    """The ``image-from-latent`` driver: the first graph maps ``latents`` ``(N, D)`` (float32, drawn by numpy as
    ``ImageSampling.rng().standard_normal((n, D), float32)``, exactly as the torch path draws them) and, for a
    conditional model, ``labels`` ``(N,)`` int64, to ``images`` ``(N, C, H, W)`` float32 in ``[0, 1]``, in one run.
    ``D`` is read from the graph's ``latents`` input, whose second axis the export fixes. Other graphs (a VAE's
    encoder) are opened too, but only the first generates."""

    name = "image-from-latent"
    kind = "image"
    description = "latents (and labels) -> images, one run"
    inputs = ("latents",)
    outputs = ("images",)
    options = ()

    def open(
        self, directory: Path, manifest: Manifest, providers: Providers, session_options: Any, precision: str
    ) -> OnnxImageModel:
        return OnnxImageModel(directory, manifest, providers, session_options, precision)


class OnnxImageModel(OnnxModel):
    """An exported image generator (driver ``image-from-latent``). One session per graph, shared by all threads."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        providers: Providers = "auto",
        session_options: Any = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(directory, manifest)
        self.sessions = {
            g.name: self.open_graph(g.name, providers, session_options, precision) for g in self.export.graphs
        }
        generating = self.export.graphs[0].name
        self.onnx = self.sessions[generating]  # the graph that generates
        self.require_io(self.onnx, generating, ["latents"], ["images"])
        self.input_names = [i.name for i in self.onnx.get_inputs()]
        self.latent_dim = _latent_dim(self.onnx, generating)

    @property
    def conditional(self) -> bool:
        return "labels" in self.input_names

    def generate(self, **settings: Any) -> ImageResult:
        """The same call as the torch path: ``generate(n=16, seed=0, labels=[3])``; same seed, same latents."""
        part = self.prepare(**settings)
        result: ImageResult = part.finish(self.run_batch(part.feeds))
        return result

    def prepare(self, **settings: Any) -> BatchPart:
        """The request's latents (and labels), drawn as ``generate`` draws them, to run in a batch with others
        (``genloom serve``'s micro-batching); its ``finish`` makes the ``ImageResult``."""
        request = validate_model(ImageSampling, settings, what="sampling settings")
        facts = self.manifest.facts
        labels = resolve_labels(
            request.labels,
            request.n,
            num_classes=int(facts.get("num_classes", 0)),
            conditional="labels" in self.input_names,
            generator=self.manifest.generator,
        )
        latents = request.rng().standard_normal((request.n, self.latent_dim), dtype=np.float32)
        feeds = {"latents": latents, **({"labels": labels} if labels is not None else {})}
        provenance = self.provenance(request.seed, request.model_dump())
        return BatchPart(feeds, lambda outputs: ImageResult(outputs["images"].transpose(0, 2, 3, 1).copy(), provenance))

    def run_batch(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The generating graph's outputs for ``feeds`` (the parts of one or more requests), in one run."""
        (images,) = self.onnx.run(["images"], feeds)
        return {"images": images}


def _latent_dim(session: Any, graph: str) -> int:
    """The size of the ``latents`` input's second axis, which an image export fixes."""
    shape = next(i.shape for i in session.get_inputs() if i.name == "latents")
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise ArtifactError(
            f"graph '{graph}': its 'latents' input has shape {shape}, not (batch, latent size); re-export the model"
        )
    return shape[1]
