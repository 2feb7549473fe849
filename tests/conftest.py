"""Shared fixtures: real entry-point plugins on a temporary sys.path, and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import genloom.plugins

# A config that trains the built-in GAN in well under a second.
TINY_GAN = ["--set", "width=8", "--set", "latent_dim=8", "--set", "batch_size=16", "--set", "sample_every=0"]


def install_fake_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Install a distribution the way pip lays it out: modules plus ``*.dist-info`` with ``entry_points.txt``."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[genloom]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path (and PYTHONPATH, for subprocesses) to install fake distributions into."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]))
    genloom.plugins.reset()
    yield directory
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]
    genloom.plugins.reset()


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One cache of `genloom eval`'s feature classifiers for the whole run (not the user's ~/.cache): each trains
    once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLOOM_CACHE_DIR", str(tmp_path_factory.mktemp("genloom-cache")))
        yield


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    """Each test discovers plugins anew and leaves no in-process plugin behind."""
    genloom.plugins.reset()
    yield
    genloom.plugins._registered_in_process.clear()
    genloom.plugins.reset()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``genloom ARGS`` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "genloom", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``genloom ARGS`` through the console script's ``main`` in this process (no interpreter start-up),
    with its exit code and output as ``run_cli`` gives them."""
    import contextlib
    import io

    from genloom.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return subprocess.CompletedProcess(
        ["genloom", *args], code if isinstance(code, int) else 1, stdout.getvalue(), stderr.getvalue()
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Bad input: exit 2, one line on stderr that contains every fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genloom: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
