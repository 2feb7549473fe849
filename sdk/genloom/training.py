"""The shared training loop every generator trains with.

It seeds everything, draws batches, calls the generator's ``train_step``, shows
a progress bar with the live losses, logs to ``metrics.jsonl``, evaluates and
writes samples on schedule, writes an atomic checkpoint every
``checkpoint_every`` steps (and, after Ctrl-C, between two steps), resumes from it
exactly (weights, optimizer state, step, RNG states), and finally saves the model
artifact and a PNG of the loss curves. Same seed and config give the same weights
on the CPU. A fixed ``validation_fraction`` of the data is held out of training and
given to the generator's ``evaluate``. A non-finite loss, figure or weight stops the
run (:class:`~genloom.errors.TrainingDiverged`) without overwriting the last good
checkpoint or saving a model.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genloom import weights
from genloom.artifacts import MANIFEST_FILE, UNREGISTERED, Manifest, TrainingSummary, save_generator
from genloom.checkpoint import CHECKPOINT_FILE, Checkpoint, load_checkpoint, save_checkpoint
from genloom.config import validate_model
from genloom.errors import ArtifactError, DataError, TrainingDiverged
from genloom.fileio import check_output_directory, remove_stale_temp_files
from genloom.generator import AnyGenerator, inference
from genloom.kinds import DataKind
from genloom.metrics import METRICS_FILE, PLOT_FILE, MetricsLog
from genloom.results import Provenance

SAMPLES_DIR = "samples"


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C, once the checkpoint at the interrupted step is safely written."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved in {checkpoint}, continue with --resume")
        self.step = step


def train(
    generator_cls: type[AnyGenerator],
    data: Any,
    out_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    kind: DataKind,
    plugin: str = UNREGISTERED,
    plugin_version: str = "",
    resume: bool = False,
    progress: bool = True,
) -> Manifest:
    """Train ``generator_cls`` on ``data`` (a dataset of ``kind``) into ``out_dir``; return the saved model's manifest.

    The model is saved as registered by ``plugin`` at ``plugin_version``. Data of
    another kind is a DataError before the generator's code runs.
    ``overrides`` are config values (validated against ``generator_cls.Config``).
    With ``resume``, the run continues from ``out_dir``'s checkpoint; overrides
    apply on top of the checkpoint's config (typically a larger ``steps``).
    The first Ctrl-C stops the run after the current step with a checkpoint
    (:class:`TrainingInterrupted`); a second one aborts at once.
    """
    import torch

    _check_kind(generator_cls, data, kind)
    out = check_output_directory(Path(out_dir), "--out", empty=False)
    checkpoint_path = out / CHECKPOINT_FILE
    checkpoint = load_checkpoint(checkpoint_path) if resume else None
    if checkpoint is None and (checkpoint_path.exists() or (out / MANIFEST_FILE).exists()):
        raise ArtifactError(
            f"'{out}' already holds a training run; pass --resume to continue it, or choose a new --out"
        )
    if checkpoint is not None:
        _check_resumable(checkpoint, generator_cls, data, out)
    values = {**(checkpoint.config if checkpoint else {}), **(overrides or {})}
    config = validate_model(generator_cls.Config, values, what=f"config of '{generator_cls.name}'")

    generator = generator_cls(config)
    data, validation = data.split(config.validation_fraction)
    if checkpoint is None:
        generator.fit_data(data)
    else:
        generator.restore(checkpoint.facts, checkpoint.files)
    torch.manual_seed(config.seed)
    generator.modules = generator.build()
    optimizers = generator.configure_optimizers()
    rng = np.random.default_rng(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    for directory in (out, out / SAMPLES_DIR):
        remove_stale_temp_files(directory)  # left by a run killed while it saved
    metrics = MetricsLog(out / METRICS_FILE)
    step, seconds, resumed, saved_step = 0, 0.0, 0, None
    if checkpoint is not None:
        checkpoint.restore(generator, optimizers, rng, checkpoint_path)
        step, seconds, resumed, saved_step = (
            checkpoint.step,
            checkpoint.seconds,
            checkpoint.resumed + 1,
            checkpoint.step,
        )
        metrics.truncate_after(step)

    def stop_if_diverged(at_step: int, figures: Mapping[str, float], kind: str) -> None:
        bad = next((name for name, value in figures.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise _diverged(generator, at_step, f"{kind} '{bad}' is {figures[bad]}", out, saved_step)

    def freeze(at_step: int, elapsed: float) -> None:
        """Checkpoint the run, unless its weights are no longer finite (the last good checkpoint stays)."""
        nonlocal saved_step
        bad = _non_finite_weight(generator)
        if bad is not None:
            raise _diverged(generator, at_step, f"weight '{bad}' holds NaN or infinite values", out, saved_step)
        save_checkpoint(
            checkpoint_path,
            generator,
            optimizers,
            rng,
            step=at_step,
            data=data.source,
            seconds=elapsed,
            resumed=resumed,
        )
        saved_step = at_step

    def evaluate(at_step: int) -> dict[str, float]:
        figures = _evaluate(generator, validation)
        stop_if_diverged(at_step, figures, "evaluation figure")
        if figures:
            metrics.append(at_step, figures)
        return figures

    from tqdm.auto import tqdm

    started = time.perf_counter() - seconds
    last: dict[str, float] = {}
    evaluated_at = sampled_at = -1
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc=f"train {generator.name}",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    with bar, _deferred_interrupt() as interrupt:
        while step < config.steps:
            for module in generator.modules.values():
                module.train()
            losses = generator.train_step(generator.get_batch(data, rng), optimizers, step)
            step += 1
            bar.update(1)
            stop_if_diverged(step, losses, "loss")
            if step % config.log_every == 0 or step == config.steps:
                last.update(losses)
                metrics.append(step, losses)
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            if config.eval_every and step % config.eval_every == 0:
                last.update(evaluate(step))
                evaluated_at = step
                if _stalled(generator, config.early_stopping_patience, metrics):
                    bar.write(
                        f"early stop at step {step}: eval/{generator.monitor} has not improved for "
                        f"{config.early_stopping_patience} evaluations"
                    )
                    break
            if config.sample_every and step % config.sample_every == 0:
                _write_samples(generator, kind, out, step)
                sampled_at = step
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                freeze(step, time.perf_counter() - started)
            if interrupt.requested:  # Ctrl-C: checkpoint between two steps, so resuming is exact
                if saved_step != step:
                    freeze(step, time.perf_counter() - started)
                raise TrainingInterrupted(step, checkpoint_path)

    if evaluated_at != step:
        last.update(evaluate(step))
    if sampled_at != step:
        _write_samples(generator, kind, out, step)
    seconds = time.perf_counter() - started
    freeze(step, seconds)
    metrics.plot(out / PLOT_FILE)
    summary = TrainingSummary(
        data=data.source, steps=step, seconds=round(seconds, 3), final_metrics=last, resumed=resumed
    )
    return save_generator(generator, out, plugin, plugin_version, summary)


def _check_kind(generator_cls: type[AnyGenerator], data: Any, kind: DataKind) -> None:
    """The data is of the generator's kind, and ``kind`` is that kind (a DataError otherwise)."""
    if kind.name != generator_cls.modality:
        raise DataError(
            f"'{generator_cls.name}' makes {generator_cls.modality}, not {kind.name}; pass the "
            f"'{generator_cls.modality}' kind"
        )
    if getattr(data, "modality", None) != kind.name or not isinstance(data, kind.dataset):
        held = getattr(data, "modality", type(data).__name__)
        raise DataError(
            f"generator '{generator_cls.name}' trains on {kind.name} data, but '{getattr(data, 'source', data)}' holds "
            f"{held}; pick a data source of kind {kind.name} (see `genloom plugins`)"
        )


def _check_resumable(checkpoint: Checkpoint, generator_cls: type[AnyGenerator], data: Any, out: Path) -> None:
    """The checkpoint must be a run of this generator on this data."""
    if checkpoint.generator != generator_cls.name:
        raise ArtifactError(
            f"the checkpoint in '{out}' is a '{checkpoint.generator}' run, not '{generator_cls.name}'; resume it with "
            f"`genloom train {checkpoint.generator} --resume`, or train '{generator_cls.name}' in a new --out"
        )
    if checkpoint.data != data.source:
        raise DataError(
            f"the checkpoint in '{out}' trained on '{checkpoint.data}', not '{data.source}'; resume with --data "
            f"{checkpoint.data}"
        )


def _diverged(generator: AnyGenerator, step: int, what: str, out: Path, saved_step: int | None) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint (step {saved_step}) is kept in '{out}'"
        if saved_step is not None
        else "no checkpoint was written and no model saved"
    )
    return TrainingDiverged(
        f"training diverged at step {step}: {what}; lower the learning rate (see `genloom schema {generator.name}`) "
        f"or check the data, then train again in a new --out; {kept}"
    )


def _non_finite_weight(generator: AnyGenerator) -> str | None:
    """The name of the first floating-point weight or buffer holding NaN or infinity, or None."""
    import torch

    for name, tensor in weights.module_tensors(generator.modules).items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


@dataclass
class _StopRequest:
    """Set by the first Ctrl-C while the loop runs."""

    requested: bool = False


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[_StopRequest]:
    """While training steps run, the first Ctrl-C (SIGINT) only asks the loop to stop between steps; a second aborts.

    The handler is installed in the main thread only (signals reach no other) and the
    previous one is put back afterwards.
    """
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _evaluate(generator: AnyGenerator, validation: Any) -> dict[str, float]:
    if validation is None:
        return {}
    with inference(generator):
        return {f"eval/{k}": v for k, v in generator.evaluate(validation).items()}


def _stalled(generator: AnyGenerator, patience: int, metrics: MetricsLog) -> bool:
    """True when the monitored figure's best value is more than ``patience`` evaluations old.

    Read from ``metrics.jsonl``, so a resumed run counts exactly as an uninterrupted one.
    """
    key = f"eval/{generator.monitor}"
    if not patience or generator.monitor is None:
        return False
    history = [record[key] for record in metrics.read() if key in record]
    if len(history) <= patience:
        return False
    return bool(min(history[-patience:]) >= min(history[:-patience]))


def _write_samples(generator: AnyGenerator, kind: DataKind, out: Path, step: int) -> None:
    """Write what the model makes now, with the kind's writer, as ``samples/samples-STEP.SUFFIX``."""
    (out / SAMPLES_DIR).mkdir(exist_ok=True)
    values = generator.training_samples()
    values = {**kind.training_samples, "seed": generator.config.seed} if values is None else values
    settings = validate_model(kind.sampling, values, what=f"training samples of '{generator.name}'")
    with inference(generator):
        output = generator.sample(settings)
    kind.write(
        kind.make_result(output, Provenance.unsaved(generator.name, settings)),
        out / SAMPLES_DIR / f"samples-{step:06d}{kind.sample_suffix}",
    )
