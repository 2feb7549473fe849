"""The shared training loop: seeding, logs, plots, checkpoints and resume after a hard kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

import genloom
from genloom.checkpoint import load_checkpoint
from genloom.errors import ArtifactError, DataError
from genloom.testing import check_generator
from genloom_gan import DCGAN
from tests.conftest import TINY_GAN, run_cli

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}


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
    assert not weights_of(tmp_path / "a")["generator.project.weight"].equal(weights_of(tmp_path / "c")["generator.project.weight"])


def test_a_run_leaves_metrics_a_loss_plot_samples_and_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    genloom.train("gan", "digits", out, progress=False, steps=30, log_every=10, checkpoint_every=10, **{**TINY, "sample_every": 15})
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


def test_sigkill_mid_run_then_resume_loses_nothing_before_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    steps = 1500
    args = ["train", "gan", "--data", "digits", "--steps", str(steps), *TINY_GAN, "--set", "checkpoint_every=100", "--quiet"]
    process = subprocess.Popen([sys.executable, "-m", "genloom", *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and load_checkpoint(checkpoint).step >= 300:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed; raise the step count"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved_step = load_checkpoint(checkpoint).step
    assert 300 <= saved_step < steps

    resumed = run_cli("train", "gan", "--data", "digits", "--out", str(out), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["steps"] == steps and manifest["training"]["resumed"] == 1
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(10, steps + 1, 10)), "every logged step exactly once, none lost, none repeated"

    reference = run_cli(*args, "--out", str(tmp_path / "reference"))
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
