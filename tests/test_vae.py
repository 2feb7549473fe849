"""The VAE plugin: training terms, the encode/decode/reconstruct/interpolate API, the conditional variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.errors import ConfigError
from genloom.testing import check_generator
from genloom_vae import ConditionalConvVAE, ConvVAE

TINY = {"width": 8, "latent_dim": 4, "batch_size": 32, "sample_every": 0, "eval_every": 0}


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAE trained long enough on digits for its reconstructions to mean something (about 2 s)."""
    out = tmp_path_factory.mktemp("vae") / "model"
    genloom.train("vae", "digits", out, progress=False, steps=600, width=16, latent_dim=8, sample_every=0, eval_every=0)
    return out


@pytest.mark.parametrize("generator_cls", [ConvVAE, ConditionalConvVAE])
def test_both_vaes_conform(tmp_path: Path, generator_cls: type[genloom.Generator]) -> None:
    check_generator(generator_cls, data="digits", workdir=tmp_path, **TINY)


def test_reconstruction_and_kl_are_logged_separately_with_beta_warming_up(tmp_path: Path) -> None:
    genloom.train(
        "vae", "digits", tmp_path, progress=False, steps=40, log_every=10, beta=2.0, beta_warmup_steps=20, **TINY
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    training = [row for row in rows if "recon" in row and "loss" in row]
    assert [row["step"] for row in training] == [10, 20, 30, 40]
    assert [row["beta"] for row in training] == pytest.approx([2.0 * 10 / 20, 2.0, 2.0, 2.0])
    for row in training:
        assert row["loss"] == pytest.approx(row["recon"] + row["beta"] * row["kl"], rel=1e-5)
    held_out = rows[-1]
    assert held_out["eval/elbo"] == pytest.approx(-(held_out["eval/recon"] + held_out["eval/kl"]), rel=1e-5)


def test_reconstructions_resemble_their_inputs(trained_vae: Path) -> None:
    model = genloom.load(trained_vae)
    digits = genloom.plugins.get_registry().open_data("digits").images[:50].transpose(0, 2, 3, 1)
    rebuilt = model.reconstruct(digits).array
    assert rebuilt.shape == digits.shape
    own_error = np.abs(rebuilt - digits).mean()
    other_error = np.abs(rebuilt - np.roll(digits, 1, axis=0)).mean()  # against a different digit
    assert own_error < 0.6 * other_error, (own_error, other_error)


def test_encode_decode_and_interpolate(trained_vae: Path) -> None:
    model = genloom.load(trained_vae)
    pictures = model.generate(n=2, seed=3)
    codes = model.encode(pictures.array)
    assert codes.shape == (2, 8) and codes.dtype == np.float32
    from_pil = model.encode(pictures.images)  # PIL images hold 8-bit pixels: nearly the same codes
    np.testing.assert_allclose(from_pil, codes, atol=0.05)
    np.testing.assert_allclose(model.decode(codes).array, model.reconstruct(pictures.array).array, atol=1e-6)
    path = model.interpolate(pictures.array[0], pictures.array[1], steps=5).array
    assert path.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(path[[0, -1]], model.decode(codes).array, atol=1e-5)
    from_latents = model.interpolate(codes[0], codes[1], steps=5).array
    np.testing.assert_allclose(from_latents, path, atol=1e-5)
    assert {"encode", "decode", "reconstruct", "interpolate"} <= set(model.info()["operations"])


def test_operations_reject_bad_input_clearly(trained_vae: Path) -> None:
    model = genloom.load(trained_vae)
    with pytest.raises(
        ConfigError, match=r"images: got an array of shape \(2, 16, 16, 1\); this model takes \(N, 8, 8, 1\)"
    ):
        model.encode(np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ConfigError, match=r"latents: got shape \(1, 3\); this model takes \(N, 8\)"):
        model.decode(np.zeros(3))
    with pytest.raises(ConfigError, match="pixel values must be uint8 or floats in \\[0, 1\\]"):
        model.encode(np.full((8, 8), 2.0))
    with pytest.raises(ConfigError, match="unconditional; drop labels"):
        model.decode(np.zeros((1, 8)), labels=[1])
    with pytest.raises(AttributeError):
        model.not_an_operation  # noqa: B018 - the bare attribute access is what raises


def test_the_conditional_vae_decodes_each_class_and_needs_labels_to_encode(tmp_path: Path) -> None:
    genloom.train("cvae", "digits", tmp_path, progress=False, steps=5, **TINY)
    model = genloom.load(tmp_path)
    codes = np.zeros((2, 4), np.float32)
    assert not np.array_equal(model.decode(codes, labels=[1]).array, model.decode(codes, labels=[7]).array)
    image = model.generate(n=1, seed=0, labels=[4]).array
    with pytest.raises(
        ConfigError, match="labels: 'cvae' needs the class of each image; pass labels=\\[...\\] with values 0..9"
    ):
        model.encode(image)
    assert model.encode(image, labels=[4]).shape == (1, 4)
    with pytest.raises(ConfigError, match="labels: 12 is not a trained class; use 0..9"):
        model.generate(n=2, labels=[12])


def test_the_mixture_prior_maps_noise_to_each_component_with_its_weight_mean_and_scale() -> None:
    import torch

    from genloom.priors import MixturePrior

    prior = MixturePrior(latent_dim=2, components=3)  # built for 3, fitted with 2: the third is never picked
    means = torch.tensor([[-10.0, 0.0], [10.0, 1.0]])  # far apart, so the sign of x tells the component
    covariances = torch.stack([torch.eye(2) * 0.25, torch.tensor([[4.0, 1.0], [1.0, 1.0]])])
    prior.fit(0, torch.tensor([0.25, 0.75]), means, covariances)
    latents = prior(torch.from_numpy(np.random.default_rng(0).standard_normal((40000, 3), dtype=np.float32)))
    first = latents[:, 0] < 0
    assert first.float().mean().item() == pytest.approx(0.25, abs=0.01)
    for picked, mean, covariance in ((first, means[0], covariances[0]), (~first, means[1], covariances[1])):
        np.testing.assert_allclose(latents[picked].mean(0), mean, atol=0.05)
        np.testing.assert_allclose(torch.cov(latents[picked].T), covariance, rtol=0.05, atol=0.05)


def test_after_training_samples_start_from_a_mixture_fitted_to_the_training_codes(tmp_path: Path) -> None:
    genloom.train("vae", "digits", tmp_path / "mixture", progress=False, steps=30, prior_components=4, **TINY)
    genloom.train("vae", "digits", tmp_path / "normal", progress=False, steps=30, prior_components=0, **TINY)
    mixture, normal = genloom.load(tmp_path / "mixture"), genloom.load(tmp_path / "normal")
    assert "prior" not in normal.generator.modules
    prior = mixture.generator.modules["prior"]
    train, _ = genloom.plugins.get_registry().open_data("digits").split(0.1)
    codes = mixture.encode(train.images.transpose(0, 2, 3, 1))
    weights = np.diff(prior.upper[0].numpy(), prepend=0.0)
    weights[-1] = 1 - weights[:-1].sum()  # the last component's upper bound is the end marker 2.0
    np.testing.assert_allclose((weights[:, None] * prior.means[0].numpy()).sum(0), codes.mean(0), atol=1e-3)
    # Same seed and steps: the networks are identical, so the samples differ by the prior alone.
    mixed, plain = mixture.generate(n=4, seed=0).array, normal.generate(n=4, seed=0).array
    assert mixed.shape == plain.shape and not np.allclose(mixed, plain, atol=1e-3)


def test_the_bernoulli_likelihood_stays_available(tmp_path: Path) -> None:
    manifest = genloom.train("vae", "digits", tmp_path, progress=False, steps=10, likelihood="bernoulli", **TINY)
    assert "likelihood" not in genloom.load(tmp_path).generator.modules
    assert manifest.training.final_metrics["recon"] > 0  # cross-entropy of pixels in [0, 1] is positive
