"""A loaded model, as apps use it: ``genloom.load(DIR).generate(...)``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest, artifact_id
from genloom.config import validate_model
from genloom.errors import ConfigError
from genloom.generator import AnyGenerator, inference
from genloom.kinds import DataKind
from genloom.results import Provenance


class LoadedModel:
    """What every loaded model has, whichever backend runs it: its directory, manifest, identity and description.

    Subclasses implement ``generate(**settings)``, returning their kind's result; ``stream`` and ``evaluate``
    are there for the kinds and backends that offer them.
    """

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
    def provider(self) -> str:
        """The ONNX Runtime execution provider in use (``CUDAExecutionProvider``, ``CPUExecutionProvider``), or
        ``cpu`` for a model that runs elsewhere on the CPU."""
        return self.device

    @property
    def conditional(self) -> bool:
        """Whether ``generate`` takes class labels (``labels=[...]``)."""
        return False

    @property
    def streamable(self) -> bool:
        """Whether :meth:`stream` yields output piece by piece."""
        return False

    def generate(self, **settings: Any) -> Any:
        """Generate with the kind's sampling settings; returns the kind's result (an ``ImageResult``, a
        ``TextResult``, ...). Typed ``Any``: which kind a model directory holds is known only once it is opened."""
        raise NotImplementedError

    def stream(self, **settings: Any) -> Iterator[Any]:
        """Yield the output piece by piece (models that stream; see :attr:`streamable`): ``str`` pieces for text.
        Typed ``Any`` like :meth:`generate`: the piece's type is the kind's, known once the model is opened."""
        raise ConfigError(f"'{self.manifest.generator}' does not stream; use generate()")

    def evaluate(self, data: Any) -> dict[str, float]:
        """Figures on held-out ``data`` of the model's kind (validation loss, ...); none by default."""
        return {}

    def _calls(self) -> list[str]:
        """The calls it offers besides ``info``."""
        return ["generate", *(["stream"] if self.streamable else [])]

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

    def provenance(self, seed: int | None, settings: dict[str, Any]) -> Provenance:
        """The provenance of a result made by this model from ``seed`` and ``settings`` (a driver's model puts it in
        its results)."""
        manifest = self.manifest
        return Provenance(
            manifest.generator, manifest.plugin, manifest.plugin_version, self.artifact_sha256, seed, settings
        )


class TorchModel(LoadedModel):
    """A trained generator run in PyTorch, its results made by its ``kind``. Safe to share between threads."""

    backend = "torch"

    def __init__(self, generator: AnyGenerator, manifest: Manifest, directory: Path, kind: DataKind) -> None:
        super().__init__(directory, manifest)
        self.generator = generator
        self.kind = kind

    @property
    def conditional(self) -> bool:
        return self.generator.capabilities.conditional

    @property
    def streamable(self) -> bool:
        return self.generator.capabilities.streamable

    def generate(self, **settings: Any) -> Any:
        """Generate with the kind's settings: ``generate(n=16, seed=0, labels=[3])`` for images,
        ``generate(prompt="Once", max_new_tokens=50, do_sample=True, top_p=0.9, seed=0)`` for text."""
        request = validate_model(self.kind.sampling, settings, what="sampling settings")
        self.generator.check_request(request)
        with inference(self.generator):
            output = self.generator.sample(request)
        return self.kind.make_result(output, self.provenance(getattr(request, "seed", None), request.model_dump()))

    def stream(self, **settings: Any) -> Iterator[Any]:
        """Yield generated output piece by piece as it is decoded (generators that stream; one prompt)."""
        if not self.streamable:
            raise ConfigError(f"'{self.generator.name}' does not stream; use generate()")
        request = validate_model(self.kind.sampling, settings, what="sampling settings")
        with inference(self.generator):
            yield from self.generator.stream(request)

    def evaluate(self, data: Any) -> dict[str, float]:
        """The generator's own figures on held-out ``data`` (:meth:`Generator.evaluate`)."""
        with inference(self.generator):
            return self.generator.evaluate(data)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """The generator's extra operations (``Generator.operations``), e.g. a VAE's ``encode``."""
        generator: AnyGenerator | None = self.__dict__.get("generator")
        returns = type(generator).operations.get(name) if generator is not None else None
        if generator is None or returns is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        method = getattr(generator, name)

        @functools.wraps(method)
        def operation(*args: Any, **kwargs: Any) -> Any:
            with inference(generator):
                output = method(*args, **kwargs)
            if returns == "result":
                return self.kind.make_result(output, self.provenance(None, {"operation": name}))
            return output

        return operation

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *type(self.generator).operations})

    def _calls(self) -> list[str]:
        return [*super()._calls(), *type(self.generator).operations]
