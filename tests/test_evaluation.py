"""`genloom eval`: the distances it reports, and the report a user reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.evaluation.distances import frechet_distance, precision_recall
from tests.conftest import assert_one_line_error, run_cli

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}


def test_frechet_distance_of_known_gaussians() -> None:
    points = np.random.default_rng(0).standard_normal((500, 6))
    assert frechet_distance(points, points) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, 2.0, 0.0, 0.0, 0.0, 2.0])
    assert frechet_distance(points, points + shift) == pytest.approx(9.0, rel=1e-6)
    # Doubling every point: tr(S) + tr(4S) - 2 tr(2S) = tr(S).
    trace = np.trace(np.cov(points, rowvar=False))
    assert frechet_distance(points, 2 * points - points.mean(0)) == pytest.approx(trace, rel=1e-6)


def test_precision_measures_fidelity_and_recall_diversity() -> None:
    real = np.random.default_rng(1).standard_normal((300, 4))
    assert precision_recall(real, real) == (1.0, 1.0)
    collapsed = np.repeat(real[:1], 300, axis=0)  # every sample the same real-looking point
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.01
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


@pytest.fixture(scope="module")
def cgan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "cgan"
    genloom.train("cgan", "digits", out, progress=False, steps=200, **TINY)
    return out


def test_eval_reports_model_and_real_reference_and_caches_the_classifier(cgan_model: Path, tmp_path: Path) -> None:
    env = {"GENLOOM_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("eval", str(cgan_model), "--data", "digits", "-n", "200", "--json", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["generator"], report["samples"], report["classifier_task"]) == ("cgan", 200, "labels")
    assert report["classifier_accuracy"] > 0.9 and not report["classifier_cached"]
    real, model = report["real"], report["generated"]
    assert real["label_accuracy"] > 0.9 and real["precision"] > 0.8 and real["recall"] > 0.8
    # 200 steps of a tiny GAN are far from real digits, and the report says so.
    assert model["frechet_distance"] > 2 * real["frechet_distance"] >= 0
    assert 0 <= model["label_accuracy"] <= 1 and report["images_per_second"] > 0
    assert list((tmp_path / "cache" / "classifiers").iterdir())

    again = json.loads(run_cli("eval", str(cgan_model), "--data", "digits", "-n", "200", "--json", env=env).stdout)
    assert again["classifier_cached"] and again["generated"] == model and again["real"] == real

    table = run_cli("eval", str(cgan_model), "--data", "digits", "-n", "200", env=env).stdout
    assert "real vs real" in table and "label accuracy" in table and "frechet distance" in table
    assert "seeds 0, 1, 2" in table and " ± " in table


def test_eval_figures_are_means_over_the_seeds_with_their_spread(cgan_model: Path, tmp_path: Path) -> None:
    env = {"GENLOOM_CACHE_DIR": str(tmp_path / "cache")}

    def report(*extra: str) -> dict:
        result = run_cli("eval", str(cgan_model), "--data", "digits", "-n", "200", "--json", *extra, env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    pooled = report("--seed", "4", "--seeds", "3")
    singles = [report("--seed", str(seed), "--seeds", "1") for seed in (4, 5, 6)]
    assert pooled["seeds"] == [4, 5, 6] and all(single["spread"] == {} for single in singles)
    for figure in ("frechet_distance", "precision", "recall", "label_accuracy"):
        values = [single["generated"][figure] for single in singles]
        assert pooled["generated"][figure] == pytest.approx(np.mean(values))
        assert pooled["spread"][f"generated.{figure}"] == pytest.approx(np.std(values, ddof=1))
    assert len({single["generated"]["frechet_distance"] for single in singles}) == 3  # the seed moves it
    refused = run_cli("eval", str(cgan_model), "--data", "digits", "--seeds", "0", env=env)
    assert refused.returncode == 2 and "--seeds" in refused.stderr


def test_unlabelled_data_gets_a_rotation_classifier_and_vae_held_out_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENLOOM_CACHE_DIR", str(tmp_path / "cache"))
    digits = genloom.plugins.get_registry().open_data("digits").images[:400, 0]
    np.savez(tmp_path / "plain.npz", images=(digits * 255).astype(np.uint8))
    source = f"npz:{tmp_path / 'plain.npz'}"
    genloom.train("vae", source, tmp_path / "vae", progress=False, steps=30, width=8, latent_dim=4, sample_every=0)
    from genloom.evaluation import evaluate_model

    report = evaluate_model(tmp_path / "vae", source, samples=100)
    assert report.classifier_task == "rotation" and report.generated.label_accuracy is None
    assert set(report.held_out) == {"recon", "kl", "elbo", "recon_mse"}
    assert report.held_out["elbo"] == pytest.approx(-(report.held_out["recon"] + report.held_out["kl"]), rel=1e-5)


def test_eval_needs_the_data_it_trained_on(cgan_model: Path) -> None:
    assert_one_line_error(
        run_cli("eval", str(cgan_model), "--data", "digits:32"), "the model makes 8x8 images", "holds 32x32"
    )
