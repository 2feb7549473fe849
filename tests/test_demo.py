"""The README's main-job command runs end to end (on a short training run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).parents[1]


def test_demo_lists_plugins_trains_and_generates(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo.py"), "--out", str(tmp_path), "--steps", "20"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "gan" in result.stdout and "digits" in result.stdout
    assert "trained 20 steps" in result.stdout
    assert (tmp_path / "digits-gan" / "manifest.json").is_file()
    assert Image.open(tmp_path / "digits-gan-samples.png").size == (292, 292)
