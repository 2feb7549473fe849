"""The ``wavenet-step`` runtime driver: a WaveNet export's one-sample step graph run by ONNX Runtime, every layer's
queue passed in and out as state, through the same sampling loop as the trained model. Imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.errors import ArtifactError
from genloom.runtime import OnnxModel
from genloom_audio.kind import AudioResult, AudioSampling
from genloom_audio.sampler import ClipFormat, generate_clips


class WaveNetStepDriver:
    """Feeds the first graph ``token`` (B,) int64, ``label`` (B,) int64 where the graph has it, and ``queue.0`` ...
    ``queue.{L-1}`` (B, channels, dilation) float32 (float16 in an fp16 export); reads ``logits`` (B, 256) and
    ``next_queue.*``, which become the next step's queues."""

    name = "wavenet-step"
    kind = "audio"
    description = "one sample per run, each layer's queue as state in and out (fast WaveNet)"
    inputs = ("token",)
    outputs = ("logits",)
    options = ("sample_rate", "clip_seconds", "receptive_field")

    def open(
        self, directory: Path, manifest: Manifest, providers: Any, session_options: Any, precision: str
    ) -> OnnxAudioModel:
        return OnnxAudioModel(directory, manifest, providers, session_options, precision)


class OnnxStepRunner:
    """The step graph behind the sampler's ``StepRunner`` protocol."""

    def __init__(self, session: Any) -> None:
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self.queue_names = sorted((name for name in inputs if name.startswith("queue.")), key=_layer)
        if not self.queue_names or [_layer(name) for name in self.queue_names] != list(range(len(self.queue_names))):
            raise ArtifactError(
                f"the step graph's queues are not queue.0 ... queue.N (it has {sorted(inputs)}); re-export"
            )
        self.shapes = [inputs[name].shape[1:] for name in self.queue_names]
        self.dtypes = [
            np.float16 if inputs[name].type == "tensor(float16)" else np.float32 for name in self.queue_names
        ]
        if not all(isinstance(size, int) for shape in self.shapes for size in shape):
            raise ArtifactError("the step graph's queues must fix every axis but the batch; re-export")
        self.conditional = "label" in inputs
        self.output_names = ["logits", *[f"next_{name}" for name in self.queue_names]]
        self.feeds: dict[str, np.ndarray] = {}

    def reset(self, labels: np.ndarray | None, batch: int) -> None:
        self.feeds = {
            name: np.zeros((batch, *shape), dtype=dtype)
            for name, shape, dtype in zip(self.queue_names, self.shapes, self.dtypes, strict=True)
        }
        if self.conditional:
            self.feeds["label"] = np.asarray(labels, dtype=np.int64)

    def advance(self, levels: np.ndarray) -> np.ndarray:
        self.feeds["token"] = np.asarray(levels, dtype=np.int64)
        logits, *queues = self.session.run(self.output_names, self.feeds)
        self.feeds.update(zip(self.queue_names, queues, strict=True))
        return np.asarray(logits)


def _layer(name: str) -> int:
    suffix = name.removeprefix("queue.")
    return int(suffix) if suffix.isdigit() else -1


class OnnxAudioModel(OnnxModel):
    """An exported WaveNet: ``generate(n=, seed=, labels=, seconds=, temperature=)`` as on the trained model."""

    def __init__(self, directory: Path, manifest: Manifest, providers: Any, session_options: Any, precision: str):
        super().__init__(directory, manifest)
        self.require_options(list(WaveNetStepDriver.options))
        graph = self.export.graphs[0].name
        self.onnx = self.open_graph(graph, providers, session_options, precision)
        self.require_io(self.onnx, graph, list(WaveNetStepDriver.inputs), list(WaveNetStepDriver.outputs))
        self.runner = OnnxStepRunner(self.onnx)
        options = self.export.driver_options
        self.clip_format = ClipFormat(
            int(options["sample_rate"]),
            float(options["clip_seconds"]),
            int(options["receptive_field"]),
            int(self.manifest.facts.get("num_classes", 0)) if self.runner.conditional else 0,
        )

    @property
    def conditional(self) -> bool:
        return self.runner.conditional

    def generate(self, **settings: Any) -> AudioResult:
        request = validate_model(AudioSampling, settings, what="sampling settings")
        clips = generate_clips(self.runner, request, self.clip_format, generator=self.manifest.generator)
        return AudioResult(
            clips.array, clips.sample_rate, clips.labels, self.provenance(request.seed, request.model_dump())
        )
