"""The shared training loop: seeding, logs, plots, checkpoints, resume after a hard kill or Ctrl-C, divergence."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from safetensors.torch import load_file

import genloom
from genloom.checkpoint import load_checkpoint
from genloom.errors import ArtifactError, DataError, GenloomError
from genloom.testing import check_generator
from genloom.training import train
from genloom_gan import DCGAN
from tests.conftest import TINY_GAN, assert_one_line_error, cli_in_process, run_cli

if TYPE_CHECKING:
    import torch

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
"""For the long runs whose weights are compared across processes: the same arithmetic in each,
and no threads thrashing when the test machine is busy."""


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train in this process on one CPU thread, as the subprocesses started with ONE_THREAD do."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def weights_of(model: Path) -> dict:
    return load_file(model / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights_of(a), weights_of(b)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].equal(second[key]), key


def test_same_seed_and_config_give_the_same_weights_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        genloom.train("gan", "digits", tmp_path / name, progress=False, steps=20, seed=seed, **TINY)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert not weights_of(tmp_path / "a")["generator.project.weight"].equal(
        weights_of(tmp_path / "c")["generator.project.weight"]
    )


def test_a_run_leaves_metrics_a_loss_plot_samples_and_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    genloom.train(
        "gan",
        "digits",
        out,
        progress=False,
        steps=30,
        log_every=10,
        checkpoint_every=10,
        **{**TINY, "sample_every": 15},
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert set(records[0]) == {"step", "d_loss", "g_loss"}
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["samples-000015.png", "samples-000030.png"]
    assert load_checkpoint(out / "checkpoint.safetensors").step == 30


def test_resume_with_more_steps_continues_exactly_where_the_run_stopped(tmp_path: Path) -> None:
    genloom.train("gan", "digits", tmp_path / "whole", progress=False, steps=40, log_every=10, **TINY)
    genloom.train("gan", "digits", tmp_path / "split", progress=False, steps=25, log_every=10, **TINY)
    manifest = genloom.train("gan", "digits", tmp_path / "split", progress=False, resume=True, steps=40)
    assert manifest.training.steps == 40 and manifest.training.resumed == 1
    assert_same_weights(tmp_path / "whole", tmp_path / "split")


def test_a_used_output_directory_needs_resume_and_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    genloom.train("gan", "digits", tmp_path / "run", progress=False, steps=2, **TINY)
    with pytest.raises(ArtifactError, match="already holds a training run; pass --resume"):
        genloom.train("gan", "digits", tmp_path / "run", progress=False, steps=2, **TINY)
    with pytest.raises(ArtifactError, match="no checkpoint at .*start the run without --resume"):
        genloom.train("gan", "digits", tmp_path / "new", progress=False, resume=True)
    np.savez(tmp_path / "other.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match="trained on 'digits'"):
        genloom.train("gan", f"npz:{tmp_path / 'other.npz'}", tmp_path / "run", progress=False, resume=True)


@pytest.mark.timeout(400)
def test_sigkill_mid_run_then_resume_loses_nothing_before_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    steps = 600
    args = [
        "train",
        "gan",
        "--data",
        "digits",
        "--steps",
        str(steps),
        *TINY_GAN,
        "--set",
        "checkpoint_every=50",
        "--quiet",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "genloom", *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **ONE_THREAD},
    )
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and load_checkpoint(checkpoint).step >= 150:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed; raise the step count"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved_step = load_checkpoint(checkpoint).step
    assert 150 <= saved_step < steps

    resumed = run_cli("train", "gan", "--data", "digits", "--out", str(out), "--resume", "--quiet", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["steps"] == steps and manifest["training"]["resumed"] == 1
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(10, steps + 1, 10)), "every logged step exactly once, none lost, none repeated"

    reference = run_cli(*args, "--out", str(tmp_path / "reference"), env=ONE_THREAD)
    assert reference.returncode == 0, reference.stderr
    assert_same_weights(out, tmp_path / "reference")


def test_the_builtin_gan_passes_the_conformance_kit(tmp_path: Path) -> None:
    check_generator(DCGAN, data="digits", workdir=tmp_path, **TINY)


def test_a_config_error_names_the_field_and_what_it_accepts(tmp_path: Path) -> None:
    with pytest.raises(genloom.ConfigError, match="field 'beta1': Input should be less than 1 \\(got 2\\)"):
        genloom.train("gan", "digits", tmp_path / "x", progress=False, beta1=2)
    with pytest.raises(genloom.ConfigError, match="unknown field 'latent' \\(did you mean 'latent_dim'\\?"):
        genloom.train("gan", "digits", tmp_path / "x", progress=False, latent=2)
    assert not (tmp_path / "x").exists()


# -- a checkpoint that cannot be trusted, another generator's checkpoint, a bad --out ---------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("short") / "gan"
    genloom.train("gan", "digits", out, progress=False, steps=2, **TINY)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def test_a_flipped_byte_in_the_checkpoints_tensors_is_refused_on_resume(short_run: Path, tmp_path: Path) -> None:
    out = copy_of(short_run, tmp_path)
    checkpoint = out / "checkpoint.safetensors"
    data = bytearray(checkpoint.read_bytes())
    tensors_start = 8 + int.from_bytes(data[:8], "little")
    data[(tensors_start + len(data)) // 2] ^= 0x01  # the lowest bit of one byte in the middle of the tensor data
    checkpoint.write_bytes(bytes(data))
    result = cli_in_process(
        "train", "gan", "--data", "digits", "--out", str(out), "--resume", "--steps", "4", "--quiet"
    )
    assert_one_line_error(result, str(checkpoint), "is corrupted", "start the run again in a new --out")
    assert json.loads((out / "manifest.json").read_text())["training"]["steps"] == 2, "nothing was trained from it"


def test_resuming_another_generators_checkpoint_says_which_generator_it_is(short_run: Path, tmp_path: Path) -> None:
    out = copy_of(short_run, tmp_path)
    result = cli_in_process("train", "vae", "--data", "digits", "--out", str(out), "--resume", "--quiet")
    assert_one_line_error(result, f"the checkpoint in '{out}' is a 'gan' run, not 'vae'", "genloom train gan")


def test_an_out_that_is_a_file_or_lies_under_a_file_is_one_error_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a directory")
    result = cli_in_process("train", "gan", "--data", "digits", "--out", str(blocker), *TINY_GAN, "--quiet")
    assert_one_line_error(result, "--out", f"'{blocker}' is a file")
    result = cli_in_process("train", "gan", "--data", "digits", "--out", str(blocker / "run"), *TINY_GAN, "--quiet")
    assert_one_line_error(result, "--out", f"'{blocker}' is a file, so '{blocker / 'run'}' cannot be created")
    assert blocker.read_text() == "not a directory"


# -- divergence -------------------------------------------------------------------------------------


def test_a_diverging_run_stops_with_one_line_keeps_the_last_good_checkpoint_and_saves_no_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli_in_process(
        "train",
        "vae",
        "--data",
        "digits",
        "--out",
        str(out),
        "--steps",
        "20",
        "--quiet",
        "--set",
        "width=8",
        "--set",
        "latent_dim=4",
        "--set",
        "batch_size=16",
        "--set",
        "sample_every=0",
        "--set",
        "eval_every=0",
        "--set",
        "checkpoint_every=1",
        "--set",
        "log_every=1",
        "--set",
        "learning_rate=1e6",
    )
    assert_one_line_error(
        result,
        "training diverged at step",
        "loss 'loss' is nan",
        "lower the learning rate",
        f"the last good checkpoint (step 1) is kept in '{out}'",
    )
    assert "model saved" not in result.stdout
    assert not (out / "manifest.json").exists() and not (out / "model.safetensors").exists()
    kept = load_checkpoint(out / "checkpoint.safetensors")
    assert kept.step == 1 and all(bool(t.isfinite().all()) for t in kept.tensors.values() if t.is_floating_point())
    assert all(
        np.isfinite(v) for line in (out / "metrics.jsonl").read_text().splitlines() for k, v in json.loads(line).items()
    ), "no NaN logged"


class PoisonedGAN(DCGAN):
    """A GAN whose last step leaves a NaN in the generator's weights while its losses are still finite."""

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        losses = super().train_step(batch, optimizers, step)
        if step == self.config.steps - 1:
            self.modules["generator"].project.weight.data[0, 0] = float("nan")
        return losses


def test_non_finite_weights_are_never_saved_as_a_model(tmp_path: Path) -> None:
    data = genloom.plugins.get_registry().open_data("digits")
    with pytest.raises(GenloomError, match="training diverged at step 3: weight 'generator.project.weight' holds NaN"):
        train(
            PoisonedGAN,
            data,
            tmp_path / "run",
            {"steps": 3, "checkpoint_every": 0, **TINY},
            kind=genloom.plugins.get_registry().kind("image"),
            progress=False,
        )
    assert (
        not (tmp_path / "run" / "manifest.json").exists() and not (tmp_path / "run" / "checkpoint.safetensors").exists()
    )


def test_an_infinite_config_float_is_a_config_error(tmp_path: Path) -> None:
    result = cli_in_process(
        "train",
        "gan",
        "--data",
        "digits",
        "--out",
        str(tmp_path / "run"),
        *TINY_GAN,
        "--set",
        "loss=wgan-gp",
        "--set",
        "gp_weight=Infinity",
    )
    assert_one_line_error(result, "field 'gp_weight': Input should be a finite number (got inf)")
    assert not (tmp_path / "run").exists()


# -- leftovers of a kill, Ctrl-C --------------------------------------------------------------------


KILLED_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    import genloom

    replace, checkpoints = os.replace, []

    def replace_or_die(source, target):
        if str(target).endswith("checkpoint.safetensors"):
            checkpoints.append(target)
            if len(checkpoints) == 2:  # the second checkpoint: written, not yet renamed
                os.kill(os.getpid(), signal.SIGKILL)
        replace(source, target)

    os.replace = replace_or_die
    genloom.train("gan", "digits", sys.argv[1], progress=False, steps=4, checkpoint_every=2,
                  width=8, latent_dim=8, batch_size=16, sample_every=0)
""")


@pytest.mark.timeout(240)
def test_temp_files_of_a_run_killed_while_saving_are_removed_when_it_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_SAVING, str(out)], capture_output=True, text=True, timeout=200
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p.name for p in out.glob(".checkpoint.safetensors.*.tmp")]
    assert left, "the kill left the half-saved checkpoint behind"
    live = out / f".manifest.json.{os.getpid()}.abcd1234.tmp"  # a writer that still runs: not touched
    live.write_bytes(b"being written")
    assert load_checkpoint(out / "checkpoint.safetensors").step == 2

    resumed = cli_in_process("train", "gan", "--data", "digits", "--out", str(out), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in out.glob(".*.tmp")) == [live.name]
    assert json.loads((out / "manifest.json").read_text())["training"]["steps"] == 4


@pytest.mark.timeout(300)
def test_ctrl_c_checkpoints_between_steps_so_resuming_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    out, steps = tmp_path / "interrupted", 200
    config = {"steps": steps, "log_every": 2, "checkpoint_every": 0, **TINY}
    settings = [part for key, value in config.items() for part in ("--set", f"{key}={value}")]
    process = subprocess.Popen(
        [sys.executable, "-m", "genloom", "train", "gan", "--data", "digits", "--out", str(out), *settings, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ONE_THREAD},
    )
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and process.poll() is None and not (out / "metrics.jsonl").exists():
            time.sleep(0.01)
        assert process.poll() is None, "training finished before it could be interrupted; raise the step count"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=200)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    stopped = load_checkpoint(out / "checkpoint.safetensors").step
    assert 2 <= stopped < steps and f"interrupted at step {stopped}; checkpoint saved" in stderr

    handler = signal.getsignal(signal.SIGINT)
    with one_torch_thread():
        resumed = cli_in_process("train", "gan", "--data", "digits", "--out", str(out), "--resume", "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        genloom.train("gan", "digits", tmp_path / "reference", progress=False, **config)
    assert signal.getsignal(signal.SIGINT) is handler, "the loop put the previous Ctrl-C handler back"
    assert_same_weights(out, tmp_path / "reference")
