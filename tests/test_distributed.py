"""Training in several processes (torchrun, gloo on the CPU), devices and precision.

Each multi-process test starts ``torchrun --standalone --nproc_per_node=2`` through
:func:`genloom.testing_ddp.train_in_processes` (its own session, killed on timeout) and checks what a user
would see: identical parameters on the ranks, the same model as one process with twice the batch, a run that
ends when a rank dies and resumes to the same weights, and ``genloom train --nproc``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genloom.errors import ConfigError
from genloom.launch import failure_message
from genloom.precision import Precision
from genloom.testing_ddp import ProcessRun, train_in_processes
from genloom_text.generator import GPTGenerator
from genloom_vae.generator import ConvVAE
from tests.conftest import TINY_GAN, run_cli

pytestmark = pytest.mark.timeout(600)

TINY = {
    "gan": {"width": 8, "latent_dim": 8, "batch_size": 8, "sample_every": 0},
    "vae": {"width": 8, "latent_dim": 4, "batch_size": 8, "sample_every": 0, "eval_every": 0},
    "gpt": {"width": 16, "layers": 1, "heads": 2, "context_length": 16, "vocab_size": 300, "batch_size": 4},
}
DATA = {"gan": "digits", "vae": "digits", "gpt": "pydoc"}
SAME_EXAMPLES_TOLERANCE = 1e-5
"""Largest absolute difference allowed between the parameters of 2 ranks x batch B and 1 process x batch 2B after
the steps below: the two sum the same per-example gradients in another order (float32), and Adam's first steps
move each weight by about the learning rate whatever the gradient's size, so rounding stays near 1e-7."""


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _shared_draw(draw: int) -> np.random.Generator:
    """The same generator on every rank for the ``draw``-th batch, of which each rank then takes its slice."""
    return np.random.default_rng([20261203, draw])


class SameExamplesVAE(ConvVAE):
    """The VAE with every rank's batch a slice of one shared draw, and no sampling noise in the loss."""

    def get_batch(self, data: Any, rng: np.random.Generator) -> Any:
        self._draws = getattr(self, "_draws", 0) + 1
        size = self.config.batch_size
        images, labels = data.sample_batch(_shared_draw(self._draws), size * _world_size())
        mine = slice(_rank() * size, (_rank() + 1) * size)
        return torch.from_numpy(images[mine]), None if labels is None else torch.from_numpy(labels[mine])

    def _loss_terms(self, images: Any, labels: Any, noise: Any) -> Any:
        import torch.nn.functional as F

        mean, log_variance = self.modules["encoder"](images, labels)
        logits = self.modules["decoder"](mean, labels)  # epsilon = 0: the same loss in every process
        recon = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images)
        kl = -0.5 * (1 + log_variance - mean.square() - log_variance.exp()).sum() / len(images)
        return recon, kl


class SameExamplesGPT(GPTGenerator):
    """The GPT with every rank's windows a slice of one shared draw."""

    def get_batch(self, data: Any, rng: np.random.Generator) -> Any:
        self._draws = getattr(self, "_draws", 0) + 1
        tokens, length, size = self.token_stream(data), self.config.context_length, self.config.batch_size
        starts = _shared_draw(self._draws).integers(0, len(tokens) - length, size=size * _world_size())
        windows = np.stack([tokens[s : s + length + 1] for s in starts[_rank() * size : (_rank() + 1) * size]])
        return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])


def _generator_class(name: str) -> Any:
    from genloom.plugins import get_registry

    return get_registry().generator(name).value


def _succeeded(run: ProcessRun) -> ProcessRun:
    assert run.returncode == 0, run.output[-4000:]
    return run


def _without_ddp_prefix(parameters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name.replace(".module.", ".", 1): tensor for name, tensor in parameters.items()}


@pytest.mark.parametrize("name", ["gan", "vae", "gpt"])
def test_two_ranks_hold_identical_parameters_and_save_one_model(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    run = _succeeded(train_in_processes(_generator_class(name), DATA[name], out, {"steps": 4, **TINY[name]}))
    first, second = run.parameters(0), run.parameters(1)
    assert first.keys() == second.keys() and len(first) > 2
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert not differing, f"parameters differ between the ranks: {differing[:5]}"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2 and manifest["training"]["steps"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [(record["step"], *sorted(record)) for record in records]
    assert len(logged) == len(set(logged)), "only rank 0 writes metrics.jsonl: each record once"
    import genloom

    model = genloom.load(out)
    result = model.generate(seed=1, **({"n": 2} if name != "gpt" else {"max_new_tokens": 4}))
    again = model.generate(seed=1, **({"n": 2} if name != "gpt" else {"max_new_tokens": 4}))
    if name == "gpt":
        assert result.texts == again.texts
    else:
        assert np.array_equal(result.images, again.images)


@pytest.mark.parametrize("generator_cls", [SameExamplesVAE, SameExamplesGPT], ids=["vae", "gpt"])
def test_two_ranks_with_batch_b_match_one_process_with_batch_2b(generator_cls: Any, tmp_path: Path) -> None:
    name = generator_cls.name
    config = {"steps": 3, "eval_every": 0, **TINY[name]}
    if name == "gpt":
        config.update(dropout=0.0, warmup_steps=0)
    batch = config["batch_size"]
    two = _succeeded(train_in_processes(generator_cls, DATA[name], tmp_path / "two", config))
    one = _succeeded(
        train_in_processes(generator_cls, DATA[name], tmp_path / "one", {**config, "batch_size": 2 * batch}, nproc=1)
    )
    distributed, single = _without_ddp_prefix(two.parameters(0)), _without_ddp_prefix(one.parameters(0))
    assert distributed.keys() == single.keys()
    worst = max(float((distributed[k] - single[k]).abs().max()) for k in single)
    start = _without_ddp_prefix(one.parameters(0, before_training=True))
    moved = max(float((single[k] - start[k]).abs().max()) for k in single)
    print(f"{name}: largest difference {worst:.3g} after weights moved by up to {moved:.3g}")
    assert worst <= SAME_EXAMPLES_TOLERANCE, f"largest parameter difference {worst:.3g}"
    assert moved > 100 * SAME_EXAMPLES_TOLERANCE, "the steps must move the weights well beyond the tolerance"


def test_a_killed_rank_ends_the_run_and_resume_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    vae = _generator_class("vae")
    config = {"steps": 8, "checkpoint_every": 4, **TINY["vae"]}
    started = time.monotonic()
    killed = train_in_processes(vae, "digits", tmp_path / "killed", config, kill_rank=1, kill_at=6, timeout=120)
    assert killed.returncode != 0
    assert time.monotonic() - started < 120
    message = failure_message(2, killed.returncode, killed.output, tmp_path / "killed")
    assert message == (
        "the 2-process run stopped: rank 1 was killed by SIGKILL, so the others were stopped too; the last "
        f"checkpoint (step 4) is in '{tmp_path / 'killed'}': continue with the same command and --resume"
    ), killed.output[-3000:]
    assert not (tmp_path / "killed" / "manifest.json").exists()

    resumed = _succeeded(train_in_processes(vae, "digits", tmp_path / "killed", config, resume=True))
    whole = _succeeded(train_in_processes(vae, "digits", tmp_path / "whole", config))
    for rank in (0, 1):
        got, want = resumed.parameters(rank), whole.parameters(rank)
        assert all(torch.equal(got[k], want[k]) for k in want), f"rank {rank}: resumed weights differ"
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["training"]["resumed"] == 1 and manifest["training"]["world_size"] == 2


def test_resuming_with_another_number_of_processes_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "two"
    _succeeded(train_in_processes(_generator_class("vae"), "digits", out, {"steps": 2, **TINY["vae"]}))
    result = run_cli("train", "vae", "--data", "digits", "--out", str(out), "--steps", "4", "--resume", "--quiet")
    assert result.returncode == 2
    assert "written by a run in 2 process(es)" in result.stderr and "--nproc 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_genloom_train_nproc_trains_in_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "gan"
    result = run_cli(
        "train", "gan", "--data", "digits", "--out", str(out), "--steps", "3", "--nproc", "2", "--quiet", *TINY_GAN
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 'gan' for 3 steps" in result.stdout
    assert result.stdout.count("trained 'gan'") == 1, "rank 0 alone reports"
    assert json.loads((out / "manifest.json").read_text())["training"]["world_size"] == 2
    generated = run_cli("generate", str(out), "-n", "4", "--seed", "3", "--out", str(tmp_path / "grid.png"))
    assert generated.returncode == 0 and (tmp_path / "grid.png").exists()


def test_genloom_train_nproc_checks_its_input_before_starting_processes(tmp_path: Path) -> None:
    result = run_cli(
        "train", "gan", "--data", "digits", "--out", str(tmp_path / "x"), "--nproc", "2", "--set", "widht=8"
    )
    assert result.returncode == 2
    assert "unknown field 'widht'" in result.stderr and "did you mean 'width'" in result.stderr
    assert "torch.distributed" not in result.stderr and "Traceback" not in result.stderr


def test_bf16_trains_on_the_cpu_and_saves_float32_weights(tmp_path: Path) -> None:
    out = tmp_path / "bf16"
    result = run_cli(
        "train", "vae", "--data", "digits", "--out", str(out), "--steps", "3", "--quiet", "--device", "cpu",
        "--set", "precision=bf16", "--set", "width=8", "--set", "sample_every=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["precision"] == "bf16" and manifest["training"]["device"] == "cpu"
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float32}


def test_fp16_on_the_cpu_and_cuda_without_a_gpu_are_one_line_errors(tmp_path: Path) -> None:
    fp16 = run_cli(
        "train", "vae", "--data", "digits", "--out", str(tmp_path / "a"), "--device", "cpu", "--set", "precision=fp16"
    )
    assert fp16.returncode == 2 and "fp16 trains on CUDA only" in fp16.stderr and "bf16" in fp16.stderr
    if not torch.cuda.is_available():
        cuda = run_cli("train", "vae", "--data", "digits", "--out", str(tmp_path / "b"), "--device", "cuda")
        assert cuda.returncode == 2 and "no CUDA GPU" in cuda.stderr and "Traceback" not in cuda.stderr


def test_fp16_loss_scaling_skips_an_overflowing_step_and_applies_the_next() -> None:
    """The scaler's mechanics, exercised on the CPU (where torch has them) although users get fp16 on CUDA only."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    precision = Precision("fp16", "cpu")
    assert precision.scaler is not None
    before = layer.weight.detach().clone()
    with precision.autocast():
        loss = layer(torch.ones(2, 4)).sum() * float("inf")
        precision.backward(loss)
        precision.step(optimizer)
    assert precision.skipped_steps == 1 and torch.equal(layer.weight, before)
    optimizer.zero_grad()
    with precision.autocast():
        precision.backward(layer(torch.full((1, 4), 1e-3)).sum())  # one row: the scaled bias gradient fits fp16
        precision.unscale_gradients(optimizer)
        grad = layer.weight.grad
        assert grad is not None and torch.allclose(grad, torch.full((1, 4), 1e-3), rtol=1e-2)
        precision.step(optimizer)
    assert precision.skipped_steps == 0 and not torch.equal(layer.weight, before)
    state = precision.state_dict()
    assert state is not None and json.loads(json.dumps(state)) == state


def _fp16_vae_on_the_cpu() -> Any:
    """A tiny built VAE for 8x8 images with fp16 loss scaling (whose mechanics torch has on the CPU too)."""
    vae = _generator_class("vae")
    generator = vae(vae.Config(width=8))
    generator.facts = {"channels": 1, "height": 8, "width": 8, "num_classes": 0}
    generator.modules = generator.build()
    generator.precision = Precision("fp16", "cpu")
    return generator


def test_fp16_refuses_a_train_step_that_calls_backward_itself(tmp_path: Path) -> None:
    from genloom.training import _train_step

    generator = _fp16_vae_on_the_cpu()
    generator.backward = lambda loss: loss.backward()  # type: ignore[method-assign]  # as a plugin written for fp32
    generator.step = lambda optimizer: optimizer.step()  # type: ignore[method-assign]

    class Data:
        source = "fake"

        def sample_batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, None]:
            return rng.random((n, 1, 8, 8), dtype=np.float32), None

    with pytest.raises(ConfigError, match="calls loss.backward\\(\\) itself"):
        _train_step(generator, generator.modules, Data(), np.random.default_rng(0), generator.configure_optimizers(), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["gan", "cgan", "vae", "cvae", "gpt", "lstm"])
def test_every_built_in_trains_on_cuda(name: str, precision: str, tmp_path: Path) -> None:
    import genloom

    config = {**TINY.get(name.lstrip("c"), TINY["gpt"] if name == "lstm" else {}), "precision": precision}
    if name == "lstm":
        config = {k: v for k, v in config.items() if k != "heads"}
    data = "pydoc" if name in ("gpt", "lstm") else "digits"
    if torch.cuda.device_count() >= 2:
        run = train_in_processes(_generator_class(name), data, tmp_path / name, {"steps": 3, **config}, device="cuda")
        assert run.returncode == 0, run.output[-3000:]
    else:
        genloom.train(name, data, tmp_path / name, device="cuda", progress=False, steps=3, **config)
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    assert manifest["training"]["device"] == "cuda" and manifest["training"]["precision"] == precision


@pytest.mark.slow
def test_the_training_benchmark_prints_one_process_two_threads_ddp_and_the_machine_limit(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "distributed_training.py"
    command = [sys.executable, str(script), "--generators", "vae", "--steps", "3", "--out", str(tmp_path / "runs")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = [line.split() for line in finished.stdout.splitlines() if line.startswith("vae ")]
    assert [row[2:4] for row in rows] == [["1", "process"], ["1", "process,"], ["DDP,", "2"], ["2", "apart"]], (
        finished.stdout
    )
    assert [row[-4] for row in rows] == ["1", "1", "2", "2"]  # the world size of each run
    assert rows[0][-1] == "1.00x" and all(float(row[-2].replace(",", "")) > 0 for row in rows)
    assert json.loads((tmp_path / "runs" / "vae-ddp" / "manifest.json").read_text())["training"]["world_size"] == 2


def test_a_checkpoint_carries_the_fp16_loss_scale(tmp_path: Path) -> None:
    from genloom.checkpoint import load_checkpoint, save_checkpoint

    generator = _fp16_vae_on_the_cpu()
    optimizers = generator.configure_optimizers()
    assert generator.precision.scaler is not None
    generator.precision.scaler.scale(torch.ones(1))  # the scaler starts on its first use
    generator.precision.scaler.update(new_scale=1024.0)
    rng = np.random.default_rng(0)
    save_checkpoint(tmp_path / "c.safetensors", generator, optimizers, rng, step=1, data="x", seconds=0.0, resumed=0)

    resumed = _fp16_vae_on_the_cpu()
    checkpoint = load_checkpoint(tmp_path / "c.safetensors")
    checkpoint.restore(resumed, resumed.configure_optimizers(), np.random.default_rng(1), tmp_path)
    assert resumed.precision.scaler is not None and resumed.precision.scaler.get_scale() == 1024.0
    assert checkpoint.world_size == 1 and len(checkpoint.ranks) == 1
