"""The plugin author guide's example, installed as its own distribution, works through the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import run_cli

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"


def guide_files() -> dict[str, str]:
    """The files the guide shows, each marked with ``<!-- file: NAME -->`` above its code block."""
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", GUIDE.read_text(), re.S))


def test_the_example_plugin_is_small() -> None:
    assert len(guide_files()["genloom_mlpvae.py"].splitlines()) <= 65


def test_the_guide_example_installs_trains_saves_loads_and_samples(tmp_path: Path) -> None:
    project, site = tmp_path / "genloom-mlpvae", tmp_path / "site"
    project.mkdir()
    for name, text in guide_files().items():
        (project / name).write_text(text)
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target", str(site), str(project)]
    subprocess.run(install, check=True, capture_output=True, text=True)
    env = {"PYTHONPATH": str(site)}

    listed = run_cli("plugins", env=env)
    assert any(line.split()[:2] == ["mlpvae", "0.1.0"] for line in listed.stdout.splitlines()), listed.stdout
    model = tmp_path / "vae"
    trained = run_cli("train", "mlpvae", "--data", "digits", "--out", str(model), "--steps", "50", "--set", "latent_dim=4", env=env)
    assert trained.returncode == 0, trained.stderr
    for name in ("a", "b"):
        made = run_cli("generate", str(model), "-n", "8", "--seed", "0", "--out", str(tmp_path / f"{name}.png"), "--npy", str(tmp_path / f"{name}.npy"), env=env)
        assert made.returncode == 0, made.stderr
    images = np.load(tmp_path / "a.npy")
    assert images.shape == (8, 8, 8, 1) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, np.load(tmp_path / "b.npy"))
    info = run_cli("info", str(model), env=env)
    assert "plugin           mlpvae" in info.stdout and "plugin_version   0.1.0" in info.stdout
