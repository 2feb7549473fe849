"""The GAN plugin's knobs: losses, discriminator steps, EMA sampling, the conditional variant."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.errors import ConfigError
from genloom.testing import check_generator
from genloom_gan import DCGAN, ConditionalDCGAN

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}


@pytest.mark.parametrize(
    ("loss", "logged"),
    [
        ("non-saturating", {"d_loss", "g_loss"}),
        ("hinge", {"d_loss", "g_loss"}),
        ("wgan-gp", {"d_loss", "g_loss", "gradient_penalty"}),
    ],
)
def test_each_loss_trains_and_logs_its_terms(tmp_path: Path, loss: str, logged: set[str]) -> None:
    manifest = genloom.train(
        "gan", "digits", tmp_path, progress=False, steps=10, log_every=5, loss=loss, d_steps=2, **TINY
    )
    assert set(manifest.training.final_metrics) == logged
    assert all(math.isfinite(v) for v in manifest.training.final_metrics.values())
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["loss"] == loss


def test_an_unknown_loss_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="field 'loss': Input should be 'non-saturating', 'hinge' or 'wgan-gp'"):
        genloom.train("gan", "digits", tmp_path, progress=False, loss="lsgan")


def test_samples_come_from_the_moving_average_generator(tmp_path: Path) -> None:
    genloom.train("gan", "digits", tmp_path / "ema", progress=False, steps=20, **TINY)
    genloom.train("gan", "digits", tmp_path / "raw", progress=False, steps=20, ema_decay=0, **TINY)
    ema, raw = genloom.load(tmp_path / "ema"), genloom.load(tmp_path / "raw")
    assert "generator_ema" in ema.generator.modules and "generator_ema" not in raw.generator.modules
    # Same seed and steps: the live generators are identical, so any difference is the average.
    assert not np.array_equal(ema.generate(n=4, seed=0).array, raw.generate(n=4, seed=0).array)


def test_the_moving_average_warms_up_so_a_short_run_samples_trained_weights_not_the_initialisation(
    tmp_path: Path,
) -> None:
    import torch

    genloom.train("gan", "digits", tmp_path, progress=False, steps=20, **TINY)  # the default ema_decay, 0.999
    trained = genloom.load(tmp_path).generator
    fresh = DCGAN(trained.config)
    fresh.restore(trained.facts, {})
    torch.manual_seed(trained.config.seed)  # as the training loop seeds before it builds
    initial = fresh.build()["generator"].state_dict()
    live, average = trained.modules["generator"].state_dict(), trained.modules["generator_ema"].state_dict()
    names = [name for name, _ in trained.modules["generator"].named_parameters()]
    assert not all(live[n].equal(initial[n]) for n in names), "the live generator trained"

    def distance(a: dict, b: dict) -> float:
        return sum(float((a[n] - b[n]).square().sum()) for n in names) ** 0.5

    # Without a warm-up the average after 20 steps is still 98% initialisation (0.999 ** 20).
    assert distance(average, live) < distance(average, initial) / 4


def test_the_conditional_gan_conforms_and_follows_labels(tmp_path: Path) -> None:
    check_generator(ConditionalDCGAN, data="digits", workdir=tmp_path, **TINY)
    model = genloom.load(tmp_path / "conformance-cgan")
    threes, sevens = model.generate(n=4, seed=0, labels=[3]).array, model.generate(n=4, seed=0, labels=[7]).array
    assert not np.array_equal(threes, sevens)
    with pytest.raises(ConfigError, match="labels: 10 is not a trained class; use 0..9"):
        model.generate(n=2, labels=[10])


def test_the_discriminator_remedies_train_log_and_normalise(tmp_path: Path) -> None:
    import torch

    settings = {**TINY, "refine_discriminator": 1, "spectral_norm": True, "minibatch_std": True, "r1_weight": 1.0}
    manifest = genloom.train("gan", "digits", tmp_path, progress=False, steps=20, log_every=5, **settings)
    assert {"d_loss", "g_loss", "r1_penalty"} <= set(manifest.training.final_metrics)
    model = genloom.load(tmp_path)
    discriminator = model.generator.modules["discriminator"]
    layers = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(layers) == 4  # a strided and a refining convolution, the minibatch-std one, the realness head
    with torch.no_grad():
        norms = [torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item() for layer in layers]
    assert all(0.8 < norm < 1.25 for norm in norms), norms  # spectral normalisation: each layer's gain about 1
    assert model.generate(n=3, seed=0).array.shape == (3, 8, 8, 1)


def test_the_minibatch_spread_channel_is_zero_for_a_batch_of_copies() -> None:
    import torch

    from genloom_gan.nets import MinibatchStd

    copies = torch.randn(1, 4, 2, 2).repeat(5, 1, 1, 1)
    assert MinibatchStd()(copies)[:, -1].abs().max().item() == 0.0
    varied = MinibatchStd()(torch.randn(5, 4, 2, 2))
    assert varied.shape == (5, 5, 2, 2) and varied[:, -1].min().item() > 0.1
