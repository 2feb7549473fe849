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
import functools
import gc
import json
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
from genloom.artifacts import MANIFEST_FILE, UNREGISTERED, BaseRecord, Manifest, TrainingSummary, save_generator
from genloom.checkpoint import CHECKPOINT_FILE, Checkpoint, load_checkpoint_bytes, parse_checkpoint, save_checkpoint
from genloom.config import GeneratorConfig, validate_model
from genloom.distributed import World
from genloom.errors import ArtifactError, ConfigError, DataError, GenloomError, TrainingDiverged
from genloom.fileio import check_output_directory, remove_stale_temp_files
from genloom.finetune import Base, base_values, load_base_weights, open_base
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
    init_from: str | Path | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> Manifest:
    """Train ``generator_cls`` on ``data`` (a dataset of ``kind``) into ``out_dir``; return the saved model's manifest.

    The model is saved as registered by ``plugin`` at ``plugin_version``. Data of
    another kind is a DataError before the generator's code runs.
    ``overrides`` are config values (validated against ``generator_cls.Config``).
    With ``resume``, the run continues from ``out_dir``'s checkpoint; overrides
    apply on top of the checkpoint's config (typically a larger ``steps``).
    The first Ctrl-C stops the run after the current step with a checkpoint
    (:class:`TrainingInterrupted`); a second one aborts at once.
    With ``init_from`` (a trained model's directory), the run starts from that model (:mod:`genloom.finetune`):
    its ``fixed_fields`` and weights, and what :meth:`~genloom.Generator.fit_data_from` keeps of it.
    Training steps run on ``device`` (``auto``, ``cpu`` or ``cuda``). Under ``torchrun``, every process runs
    this function: each trains on its own batches with gradients averaged (:mod:`genloom.distributed`), and
    rank 0 alone writes ``out_dir``.
    """
    import torch

    from genloom.distributed import join, rank_seed
    from genloom.precision import Precision, check_precision, resolve_device

    _check_kind(generator_cls, data, kind)
    base = open_base(init_from, generator_cls, resume=resume)
    world = join(resolve_device(device))
    wrapped: dict[str, Any] = {}
    try:
        checkpoint = _read_checkpoint(world, Path(out_dir), resume)
        out = Path(out_dir)
        if checkpoint is not None:
            world.on_main(lambda: _check_resumable(checkpoint, generator_cls, data, out, world.size))
        fixed = base_values(generator_cls, base, overrides or {}) if base is not None else {}
        values = {**(checkpoint.config if checkpoint else {}), **(overrides or {}), **fixed}
        config = validate_model(generator_cls.Config, values, what=f"config of '{generator_cls.name}'")
        if checkpoint is not None:
            _check_fixed_fields(generator_cls, checkpoint.config, config, out)
        check_precision(config.precision, world.device)

        generator = generator_cls(config)
        data, validation = data.split(config.validation_fraction)
        if checkpoint is None:
            if base is None:
                world.on_main(lambda: generator.fit_data(data))
            else:
                world.on_main(lambda: generator.fit_data_from(data, base.facts, base.files))
            _share_fitted(world, generator)
        else:
            generator.restore(checkpoint.facts, checkpoint.files)
        torch.manual_seed(config.seed)
        generator.modules = generator.build()
        if base is not None:
            load_base_weights(generator, base)
        generator.modules = {name: module.to(world.device) for name, module in generator.modules.items()}
        if world.rank:  # every rank builds the same weights, then draws its own noise
            torch.manual_seed(rank_seed(config.seed, world.rank))
        generator.device = str(world.device)
        generator.precision = Precision(config.precision, world.device.type)
        optimizers = generator.configure_optimizers()
        rng = np.random.default_rng(rank_seed(config.seed, world.rank))
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            for directory in (out, out / SAMPLES_DIR):
                remove_stale_temp_files(directory)  # left by a run killed while it saved
        metrics = MetricsLog(out / METRICS_FILE)
        step, seconds, resumed, saved_step = 0, 0.0, 0, None
        if checkpoint is not None:
            checkpoint.restore(generator, optimizers, rng, out / CHECKPOINT_FILE, world.rank)
            step, seconds, resumed, saved_step = (
                checkpoint.step,
                checkpoint.seconds,
                checkpoint.resumed + 1,
                checkpoint.step,
            )
            if world.is_main:
                metrics.truncate_after(step)
        wrapped.update(world.wrap(generator.modules))
        return _run(
            generator, data, validation, out, config, optimizers, rng, world, wrapped, metrics,
            _RunState(step, seconds, resumed, saved_step, step, _base_record(base, checkpoint)),
            kind=kind, plugin=plugin, plugin_version=plugin_version, progress=progress,
        )  # fmt: skip
    finally:
        wrapped.clear()  # the DDP wrappers go before their process group does
        gc.collect()
        world.leave()


@dataclass
class _RunState:
    """Where a run stands: steps taken, seconds spent (resumed runs added up), resumes, the last checkpoint."""

    step: int
    seconds: float
    resumed: int
    saved_step: int | None
    first_step: int
    """The step this process started at (0, or the checkpoint's)."""
    base: BaseRecord | None = None
    """The model the run started from (--init-from), as its checkpoints keep it."""


def _run(
    generator: AnyGenerator,
    data: Any,
    validation: Any,
    out: Path,
    config: Any,
    optimizers: dict[str, Any],
    rng: np.random.Generator,
    world: World,
    wrapped: dict[str, Any],
    metrics: MetricsLog,
    state: _RunState,
    *,
    kind: DataKind,
    plugin: str,
    plugin_version: str,
    progress: bool,
) -> Manifest:
    """The steps of a run set up by :func:`train`, its checkpoints, evaluations and samples, and the saved model."""
    from genloom.checkpoint import rank_rng_state

    checkpoint_path = out / CHECKPOINT_FILE

    def stop_if_diverged(at_step: int, figures: Mapping[str, float], what: str) -> None:
        bad = next((name for name, value in figures.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise _diverged(generator, at_step, f"{what} '{bad}' is {figures[bad]}", out, state.saved_step)

    def freeze(at_step: int, elapsed: float) -> None:
        """Checkpoint the run, unless its weights are no longer finite (the last good checkpoint stays)."""
        world.average_buffers(generator.modules)
        ranks = world.gather_json(rank_rng_state(rng))

        def write() -> None:
            bad = _non_finite_weight(generator.modules)
            if bad is not None:
                what = f"weight '{bad}' holds NaN or infinite values"
                raise _diverged(generator, at_step, what, out, state.saved_step)
            save_checkpoint(
                checkpoint_path, generator, optimizers, rng,
                step=at_step, data=data.source, seconds=elapsed, resumed=state.resumed, ranks=ranks,
                base=None if state.base is None else state.base.model_dump(mode="json"),
            )  # fmt: skip

        world.on_main(write)
        state.saved_step = at_step

    def evaluate(at_step: int) -> dict[str, float]:
        def run() -> dict[str, float]:
            with _on_cpu(generator):
                figures = _evaluate(generator, validation)
            stop_if_diverged(at_step, figures, "evaluation figure")
            if figures:
                metrics.append(at_step, figures)
            return figures

        return dict(world.from_main(run))

    from tqdm.auto import tqdm

    started = time.perf_counter() - state.seconds
    run_started = time.perf_counter()
    last: dict[str, float] = {}
    evaluated_at = sampled_at = -1
    step = state.step
    bar = tqdm(
        total=config.steps,
        initial=step,
        desc=f"train {generator.name}" + (f" ({world.size} processes)" if world.size > 1 else ""),
        disable=None if progress and world.is_main else True,
        dynamic_ncols=True,
    )
    with bar, _deferred_interrupt() as interrupt, _stopped_by_torchrun(world, out, state):
        while step < config.steps:
            losses, skipped = _train_step(generator, wrapped, data, rng, optimizers, step)
            losses, stop = world.mean(losses, interrupt.requested)
            step += 1
            bar.update(1)
            if not skipped:  # an fp16 step skipped for overflowing gradients is loss scaling at work, not divergence
                stop_if_diverged(step, losses, "loss")
            if step % config.log_every == 0 or step == config.steps:
                last.update(losses)
                if world.is_main:
                    metrics.append(step, losses)
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            if config.eval_every and step % config.eval_every == 0:
                last.update(evaluate(step))
                evaluated_at = step
                stalled = functools.partial(_stalled, generator, config.early_stopping_patience, metrics)
                if world.from_main(stalled):
                    bar.write(
                        f"early stop at step {step}: eval/{generator.monitor} has not improved for "
                        f"{config.early_stopping_patience} evaluations"
                    )
                    break
            if config.sample_every and step % config.sample_every == 0:
                world.on_main(functools.partial(_write_samples, generator, kind, out, step))
                sampled_at = step
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                freeze(step, time.perf_counter() - started)
            if stop:  # Ctrl-C on any rank: checkpoint between two steps, so resuming is exact
                if state.saved_step != step:
                    freeze(step, time.perf_counter() - started)
                raise TrainingInterrupted(step, checkpoint_path)

    with inference(generator):
        generator.finish_training(data)
    this_run = time.perf_counter() - run_started
    if evaluated_at != step:
        last.update(evaluate(step))
    if sampled_at != step:
        world.on_main(functools.partial(_write_samples, generator, kind, out, step))
    seconds = time.perf_counter() - started
    freeze(step, seconds)
    samples = (step - state.first_step) * config.batch_size * world.size

    def save() -> Manifest:
        metrics.plot(out / PLOT_FILE)
        summary = TrainingSummary(
            data=data.source,
            steps=step,
            seconds=round(seconds, 3),
            final_metrics=last,
            resumed=state.resumed,
            world_size=world.size,
            device=world.device.type,
            precision=config.precision,
            samples_per_second=round(samples / this_run, 3) if this_run > 0 and samples else None,
            base=state.base,
        )
        with _on_cpu(generator):
            return save_generator(generator, out, plugin, plugin_version, summary)

    manifest = world.on_main(save)
    saved = world.share_json(manifest.model_dump(mode="json") if manifest is not None else None)
    return manifest if manifest is not None else Manifest.model_validate(saved)


@contextlib.contextmanager
def _on_cpu(generator: AnyGenerator) -> Iterator[None]:
    """The generator's modules on the CPU while the block runs (evaluation, samples, saving); a copy of them when
    training runs on another device."""
    if generator.device == "cpu":
        yield
        return
    import copy

    trained = generator.modules
    generator.modules = {name: copy.deepcopy(module).cpu() for name, module in trained.items()}
    try:
        yield
    finally:
        generator.modules = trained


def _train_step(
    generator: AnyGenerator,
    wrapped: dict[str, Any],
    data: Any,
    rng: np.random.Generator,
    optimizers: dict[str, Any],
    step: int,
) -> tuple[dict[str, float], bool]:
    """One training step on the training device, with the modules as the world wraps them (DDP, or as they are).

    Returns the losses and whether fp16 loss scaling skipped an optimizer step.
    """
    from genloom.precision import unscaled_backward_error

    precision = generator.precision
    assert precision is not None
    plain = generator.modules
    for module in plain.values():
        module.train()
    batch = _to_device(generator.get_batch(data, rng), generator.device)
    generator.modules = wrapped  # the plugin calls its modules as it always does; DDP averages the gradients
    try:
        with precision.autocast():
            losses = generator.train_step(batch, optimizers, step)
    finally:
        generator.modules = plain
    if precision.scaler is not None and not precision.backward_calls:
        raise unscaled_backward_error(f"'{generator.name}'")
    return losses, precision.skipped_steps > 0


def _to_device(batch: Any, device: str) -> Any:
    """The batch with every tensor in it (in tuples, lists and dicts too) on ``device``."""
    if device == "cpu":
        return batch
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def _read_checkpoint(world: World, out: Path, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume from (read by rank 0, its bytes sent to the others), or None for a new run.

    A new run into a directory that holds one is an ArtifactError on every rank.
    """

    def read() -> bytes | None:
        checked = check_output_directory(out, "--out", empty=False)
        path = checked / CHECKPOINT_FILE
        if resume:
            return load_checkpoint_bytes(path)
        if path.exists() or (checked / MANIFEST_FILE).exists():
            raise ArtifactError(
                f"'{checked}' already holds a training run; pass --resume to continue it, or choose a new --out"
            )
        return None

    data = world.on_main(read)
    if not resume:
        return None
    return parse_checkpoint(world.share_bytes(data), out / CHECKPOINT_FILE)


def _base_record(base: Base | None, checkpoint: Checkpoint | None) -> BaseRecord | None:
    """The base a run started from: the one given, or (resumed) the one its checkpoint names."""
    if base is not None:
        return base.record
    saved = checkpoint.base if checkpoint is not None else None
    return BaseRecord.model_validate(saved) if saved is not None else None


def _share_fitted(world: World, generator: AnyGenerator) -> None:
    """What rank 0's ``fit_data`` learned (facts, extra files such as a tokenizer), restored on every other rank."""
    if world.size == 1:
        return
    import base64

    fitted = world.share_json(
        {
            "facts": generator.facts,
            "files": {k: base64.b64encode(v).decode("ascii") for k, v in generator.extra_files().items()},
        }
        if world.is_main
        else None
    )
    if not world.is_main:
        generator.restore(fitted["facts"], {k: base64.b64decode(v) for k, v in fitted["files"].items()})


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


def _check_resumable(
    checkpoint: Checkpoint, generator_cls: type[AnyGenerator], data: Any, out: Path, world_size: int
) -> None:
    """The checkpoint must be a run of this generator on this data, in as many processes."""
    if checkpoint.world_size != world_size:
        how = f"--nproc {checkpoint.world_size}" if checkpoint.world_size > 1 else "one process (no --nproc)"
        raise ArtifactError(
            f"the checkpoint in '{out}' was written by a run in {checkpoint.world_size} process(es), and this one has "
            f"{world_size}; resume it with {how}, so every process gets its own batches back"
        )
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


def _check_fixed_fields(
    generator_cls: type[AnyGenerator], saved: Mapping[str, Any], config: GeneratorConfig, out: Path
) -> None:
    """A resumed run keeps the generator's ``fixed_fields`` as its checkpoint has them."""
    trained = validate_model(generator_cls.Config, saved, what=f"the checkpoint's config in '{out}'")
    for field in generator_cls.fixed_fields:
        before, now = getattr(trained, field), getattr(config, field)
        if before != now:
            raise ConfigError(
                f"{field}: the run in '{out}' trained with {field}={json.dumps(before)}, and it cannot change when the "
                f"run resumes; drop --set {field}={json.dumps(now)}, or train a new model in a new --out"
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


def _non_finite_weight(modules: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point weight or buffer holding NaN or infinity, or None."""
    import torch

    for name, tensor in weights.module_tensors(modules).items():
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


class RankStopped(GenloomError):
    """torchrun stopped this rank (SIGTERM), which it does to every rank when one of them fails."""


@contextlib.contextmanager
def _stopped_by_torchrun(world: World, out: Path, state: _RunState) -> Iterator[None]:
    """In a run of several processes, SIGTERM (torchrun's way of ending the others when a rank dies) becomes a
    :class:`RankStopped` that says so and names the checkpoint to resume from, rather than a silent exit."""
    if world.size == 1 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        kept = (
            f"the last checkpoint (step {state.saved_step}) is in '{out}': resume with --resume and "
            f"{world.size} processes"
            if state.saved_step is not None
            else "no checkpoint was written yet"
        )
        raise RankStopped(f"rank {world.rank} was stopped (SIGTERM), most likely because another rank failed; {kept}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


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
    with _on_cpu(generator):
        _write_samples_on_cpu(generator, kind, out, step)


def _write_samples_on_cpu(generator: AnyGenerator, kind: DataKind, out: Path, step: int) -> None:
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
