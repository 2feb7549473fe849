"""The ``wavenet`` generator: mu-law WaveNet trained on clips, sampled with cached per-layer queues, exported as the
one-sample step graph."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator
from typing_extensions import Self

import genloom
from genloom.errors import DataError
from genloom_audio.data import AudioData, check_classes
from genloom_audio.kind import AudioSampling, Clips
from genloom_audio.mulaw import SILENCE, encode
from genloom_audio.sampler import ClipFormat, generate_clips, labels_for

if TYPE_CHECKING:
    import torch

    from genloom_audio.nets import WaveNet as WaveNetNet


MIN_RATE = 1000
"""The lowest sample rate (Hz) a model takes."""


class WaveNetConfig(genloom.GeneratorConfig):
    """The WaveNet's shape, its audio and its training."""

    steps: int = Field(800, ge=1, description="Optimisation steps to train for.")
    batch_size: int = Field(8, ge=1, description="Segments per training step.")
    checkpoint_every: int = Field(200, ge=0, description="Write a resumable checkpoint every N steps (0: at the end).")
    validation_fraction: float = Field(
        0.125, ge=0, lt=1, description="Share of clips held out for evaluation (the same clips every run)."
    )
    sample_rate: int | None = Field(
        None,
        ge=MIN_RATE,
        le=96_000,
        description="Sample rate of the model in Hz (None: the data's); data is resampled.",
    )
    clip_seconds: float | None = Field(
        None, gt=0, le=600, description="Default length of a generated clip (None: the median training clip)."
    )
    residual_channels: int = Field(32, ge=1, description="Channels of each layer's input and residual output.")
    gate_channels: int = Field(32, ge=1, description="Channels of each layer's gated activation.")
    skip_channels: int = Field(64, ge=1, description="Channels of the skip connections and the output head.")
    layers_per_cycle: int = Field(
        9, ge=1, le=16, description="Layers per dilation cycle; their dilations are 1, 2, 4, ... 2^(layers-1)."
    )
    cycles: int = Field(2, ge=1, le=8, description="Dilation cycles stacked on each other.")
    conditional: bool = Field(True, description="Condition on the class label when the data has labels.")
    segment: int = Field(1024, ge=1, description="Predicted samples per training segment (each sees its full context).")
    onset_fraction: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of training segments that start at a clip's beginning, after silence: where every "
        "generated clip starts.",
    )
    lr: float = Field(3e-3, gt=0, description="Adam learning rate at its peak (linear warm-up, then cosine decay).")
    warmup_steps: int = Field(50, ge=0, description="Steps of linear learning-rate warm-up.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the gradients' global norm to this.")

    @model_validator(mode="after")
    def _two_layers(self) -> Self:
        if self.layers_per_cycle * self.cycles < 2:
            raise ValueError(
                "layers_per_cycle x cycles is 1; a WaveNet needs at least 2 layers, set either to 2 or more"
            )
        return self

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_cycle)] * self.cycles

    @property
    def receptive_field(self) -> int:
        return 1 + sum(self.dilations)


class WaveNet(genloom.Generator[AudioSampling, Clips, AudioData]):
    """Mu-law WaveNet (van den Oord et al. 2016) with fast cached sampling; conditional on the class label."""

    name = "wavenet"
    modality = "audio"
    Config = WaveNetConfig
    config: WaveNetConfig
    capabilities = genloom.Capabilities(conditional=True, exportable=True)
    description = "mu-law WaveNet: dilated causal convolutions, gated, label-conditioned; cached sampling"
    monitor = "val_loss"
    fixed_fields = (
        "sample_rate",
        "clip_seconds",
        "conditional",
        "layers_per_cycle",
        "cycles",
        "residual_channels",
        "gate_channels",
        "skip_channels",
    )

    def __init__(self, config: genloom.GeneratorConfig) -> None:
        super().__init__(config)
        self._windows: dict[tuple[str, str, int], tuple[list[np.ndarray], np.ndarray | None]] = {}

    # -- data ------------------------------------------------------------------------------------------------

    def fit_data(self, data: AudioData) -> None:
        """Resample to the model's rate and refuse clips shorter than the receptive field."""
        self._fit(data, self.config.sample_rate or data.sample_rate)

    def fit_data_from(self, data: AudioData, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Fine-tuning: the new clips are resampled to the base's rate; the classes are the new data's (the label
        embedding's rows carry over by index)."""
        self._fit(data, int(facts["sample_rate"]))

    def _fit(self, data: AudioData, rate: int) -> None:
        if rate < MIN_RATE:
            raise DataError(
                f"{data.source}: the clips are at {rate} Hz, below the {MIN_RATE} Hz a WaveNet here takes; set "
                f"sample_rate (e.g. --set sample_rate=16000) to resample them"
            )
        clips = data.at_rate(rate)
        field = self.config.receptive_field
        for name, clip in zip(clips.names, clips.clips, strict=True):
            if len(clip) < field:
                raise DataError(
                    f"{data.source}: {name} is {len(clip)} samples ({len(clip) / rate:.3f} s at {rate} Hz), shorter "
                    f"than the receptive field of {field} samples; remove it, or set smaller layers_per_cycle/cycles"
                )
        facts = clips.facts()
        if not self.config.conditional:
            facts.update(num_classes=0, class_names=[])
        self.facts = {
            **facts,
            "clip_seconds": self.config.clip_seconds or facts["clip_seconds"],
            "receptive_field": field,
        }

    @property
    def sample_rate(self) -> int:
        return int(self.facts["sample_rate"])

    @property
    def num_classes(self) -> int:
        return int(self.facts.get("num_classes", 0))

    def _padded(self, data: AudioData) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Each clip's levels after ``receptive_field`` silence (and silence after it up to one segment), cached."""
        key = (data.source, data.part, len(data))
        if key not in self._windows:  # the training split and the held-out one, each encoded once
            field, segment = self.config.receptive_field, self.config.segment
            padded = []
            for clip in data.at_rate(self.sample_rate).clips:
                levels = encode(clip)
                tail = max(0, segment - len(levels))
                padded.append(np.concatenate([np.full(field, SILENCE), levels, np.full(tail, SILENCE)]))
            self._windows[key] = (padded, data.labels if self.num_classes else None)
        return self._windows[key]

    def get_batch(self, data: AudioData, rng: np.random.Generator) -> Any:
        """``(levels (B, receptive_field + segment) int64, labels (B,) or None)``: random windows of random clips."""
        import torch

        padded, labels = self._padded(data)
        width = self.config.receptive_field + self.config.segment
        rows = rng.integers(0, len(padded), self.config.batch_size)
        onsets = rng.random(len(rows)) < self.config.onset_fraction
        starts = [
            0 if onset else int(rng.integers(0, len(padded[row]) - width + 1))
            for row, onset in zip(rows, onsets, strict=True)
        ]
        windows = np.stack([padded[row][start : start + width] for row, start in zip(rows, starts, strict=True)])
        return torch.from_numpy(windows), None if labels is None else torch.from_numpy(labels[rows])

    # -- training --------------------------------------------------------------------------------------------

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_audio.nets import WaveNet as Net

        config = self.config
        net = Net(
            residual=config.residual_channels,
            gate=config.gate_channels,
            skip=config.skip_channels,
            dilations=config.dilations,
            num_classes=self.num_classes,
        )
        return {"wavenet": net}

    @property
    def net(self) -> WaveNetNet:
        net: WaveNetNet = self.modules["wavenet"]  # type: ignore[assignment]
        return net

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        return {"adam": torch.optim.Adam(self.modules["wavenet"].parameters(), lr=self.config.lr)}

    def _loss(self, module: torch.nn.Module, windows: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of each of the last ``segment`` levels given everything before it."""
        import torch.nn.functional as F

        field = self.config.receptive_field
        logits = module(windows[:, :-1], labels)
        return F.cross_entropy(logits[:, :, field - 1 :].float(), windows[:, field:])

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch

        windows, labels = batch
        optimizer = optimizers["adam"]
        for group in optimizer.param_groups:
            group["lr"] = self._learning_rate(step)
        loss = self._loss(self.modules["wavenet"], windows, labels)
        optimizer.zero_grad()
        self.backward(loss)
        self.unscale_gradients(optimizer)
        torch.nn.utils.clip_grad_norm_(self.modules["wavenet"].parameters(), self.config.grad_clip)
        self.step(optimizer)
        return {"loss": loss.item()}

    def _learning_rate(self, step: int) -> float:
        config = self.config
        warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        return config.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))

    def evaluate(self, data: AudioData) -> dict[str, float]:
        """``val_loss``: cross-entropy (nats per sample) of the first segment of every held-out clip."""
        import torch

        check_classes(list(self.facts.get("class_names") or []), data, self.name)

        padded, labels = self._padded(data)
        width = self.config.receptive_field + self.config.segment
        windows = torch.from_numpy(np.stack([levels[:width] for levels in padded]))
        label_tensor = None if labels is None else torch.from_numpy(labels)
        return {"val_loss": self._loss(self.net, windows, label_tensor).item()}

    # -- sampling --------------------------------------------------------------------------------------------

    def check_request(self, settings: AudioSampling) -> None:
        labels_for(settings, self.num_classes, self.name)

    def sample(self, settings: AudioSampling) -> Clips:
        from genloom_audio.nets import TorchStepRunner

        return generate_clips(TorchStepRunner(self.net), settings, ClipFormat.of(self.facts), generator=self.name)

    def export_spec(self) -> genloom.ExportSpec:
        import torch

        from genloom_audio.nets import WaveNetStep

        step = WaveNetStep(self.net)
        queues = step.empty_queues(2)
        names = [f"queue.{i}" for i in range(len(queues))]
        label = ["label"] if self.num_classes else []
        example = (torch.full((2,), SILENCE), *([torch.zeros(2, dtype=torch.int64)] if label else []), *queues)
        outputs = ["logits", *[f"next_{name}" for name in names]]
        graph = genloom.GraphSpec(
            name="step",
            module=step,
            example_inputs=example,
            input_names=["token", *label, *names],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["token", *label, *names, *outputs]},
            sample_inputs=self._parity_inputs,
        )
        return genloom.ExportSpec(
            driver="wavenet-step",
            graphs=[graph],
            driver_options={
                "sample_rate": self.sample_rate,
                "clip_seconds": float(self.facts["clip_seconds"]),
                "receptive_field": int(self.facts["receptive_field"]),
            },
        )

    def _parity_inputs(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Random levels, labels and queues (of the scale a trained layer's inputs have) for the parity check."""
        token = rng.integers(0, 256, batch).astype(np.int64)
        label = [rng.integers(0, self.num_classes, batch).astype(np.int64)] if self.num_classes else []
        width = self.config.residual_channels
        queues = [rng.standard_normal((batch, width, d)).astype(np.float32) for d in self.config.dilations]
        return (token, *label, *queues)
