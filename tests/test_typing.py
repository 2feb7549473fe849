"""What a plugin author's type checker sees of genloom's public types (mypy, as configured in pyproject.toml).

The test command runs mypy over the whole tree first; these tests ask it what it infers for the typed bases and
that it refuses a plugin that breaks the contract, so that a change to the public types shows up as a failure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="the type checker comes with genloom[test]")

ROOT = Path(__file__).resolve().parents[1]


def check(code: str, where: Path) -> tuple[str, int]:
    """mypy's report and exit status on ``code`` (a module in ``where``), with the project's configuration."""
    module = where / "author_code.py"
    module.write_text(code)
    report, errors, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml"), str(module)])
    return report + errors, status


def revealed(report: str) -> list[str]:
    return re.findall(r'Revealed type is "([^"]+)"', report)


@pytest.mark.timeout(180)
def test_sample_of_each_typed_base_names_its_result_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the configuration's paths are the repository's
    report, _ = check(
        "import genloom\n"
        "from typed_plugin import StubImageGenerator, StubTextGenerator, StubWavesGenerator, WavesSampling\n"
        "def f(image: StubImageGenerator, text: StubTextGenerator, waves: StubWavesGenerator) -> None:\n"
        "    reveal_type(image.sample(genloom.ImageSampling(n=2)))\n"
        "    reveal_type(text.sample(genloom.TextSampling(prompt='a')))\n"
        "    reveal_type(waves.sample(WavesSampling(count=2)))\n"
        "    reveal_type(genloom.load('m'))\n",
        tmp_path,
    )
    image, text, waves, loaded = revealed(report)
    assert image.startswith("numpy.ndarray"), report
    assert text == "genloom.textgen.Decoded", report
    assert waves.startswith("numpy.ndarray"), report
    assert loaded == "genloom.model.LoadedModel", report


@pytest.mark.timeout(180)
def test_a_plugin_that_breaks_the_contract_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    report, status = check(
        "from typing import Any\n"
        "import genloom\n"
        "class Wrong(genloom.ImageGenerator):\n"
        "    name = 'wrong'\n"
        "    def build(self) -> dict[str, Any]: return {}\n"
        "    def configure_optimizers(self) -> dict[str, Any]: return {}\n"
        "    def train_step(self, batch: Any, optimizers: dict[str, Any], step: int) -> dict[str, float]: return {}\n"
        "    def sample(self, settings: genloom.TextSampling) -> str: return settings.prompt\n"
        "@genloom.hookimpl\n"
        "def register_generators(register: Any) -> None:\n"
        "    register(Wrong)\n"
        "genloom.load('m').not_a_member\n",
        tmp_path,
    )
    assert status == 1, report
    assert 'Argument 1 of "sample" is incompatible with supertype' in report, report
    assert 'Return type "str" of "sample" incompatible' in report, report
    assert '"LoadedModel" has no attribute "not_a_member"' in report, report
