"""The README's main-job command runs end to end (on short training runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).parents[1]


def test_demo_trains_exports_generates_and_benchmarks(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "demo.py"),
            "--out",
            str(tmp_path),
            "--steps",
            "20",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("trained 20 steps") == 4
    for name in ("gan", "vae"):
        assert Image.open(tmp_path / f"digits-{name}-samples.png").size == (292, 292)
        assert json.loads((tmp_path / f"digits-{name}-onnx" / "manifest.json").read_text())["kind"] == "export"
    assert "gpt: The list" in result.stdout and "gpt: A module" in result.stdout
    assert "tvae: 1000 penguins" in result.stdout and "species" in result.stdout
    assert len((tmp_path / "penguins-tvae-rows.csv").read_text().splitlines()) == 1001  # a header and 1,000 rows
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert {row["path"] for row in figures["images"]} == {"torch eager (bare module)", "onnxruntime fp32"}
    assert {"genloom torch", "onnxruntime fp32", "onnxruntime int8"} <= {row["path"] for row in figures["text"]}
    assert {row["batch"] for row in figures["outputs"] if row["path"] == "onnxruntime fp32"} == {1, 64, 4096}
    assert "images/s" in result.stdout and "tokens/s" in result.stdout and (tmp_path / "bench.png").stat().st_size > 0
