"""Model directories: atomic writes, hash checks, format versions, no pickle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import genloom
from genloom.artifacts import FORMAT_VERSION, read_manifest, write_artifact
from genloom.errors import ArtifactError
from genloom.fileio import atomic_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact") / "gan"
    genloom.train("gan", "digits", out, progress=False, steps=5, width=8, latent_dim=8, batch_size=8, sample_every=0)
    return out


def copy_of(model: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(model, tmp_path / "copy"))


def test_a_model_directory_holds_manifest_weights_and_hashes(trained: Path) -> None:
    manifest = read_manifest(trained)
    assert manifest.format_version == FORMAT_VERSION
    assert (manifest.generator, manifest.plugin, manifest.modality) == ("gan", "gan", "image")
    assert set(manifest.files) == {"model.safetensors"}
    assert manifest.facts["height"] == 8 and manifest.config["width"] == 8
    assert manifest.training.steps == 5 and manifest.training.data == "digits"


def test_a_flipped_byte_in_the_weights_names_the_file(trained: Path, tmp_path: Path) -> None:
    model = copy_of(trained, tmp_path)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=re.escape(f"{weights} is corrupted")):
        genloom.load(model)


def test_a_missing_file_names_the_file(trained: Path, tmp_path: Path) -> None:
    model = copy_of(trained, tmp_path)
    (model / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=re.escape(f"{model / 'model.safetensors'} is missing")):
        genloom.load(model)


def test_a_newer_format_asks_for_an_upgrade(trained: Path, tmp_path: Path) -> None:
    model = copy_of(trained, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer than this genloom reads .*; upgrade genloom"):
        genloom.load(model)


@pytest.mark.parametrize("version", [0, -1, True, "1", None])
def test_a_format_version_genloom_never_writes_is_refused(trained: Path, tmp_path: Path, version: object) -> None:
    model = copy_of(trained, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["format_version"] = version
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ArtifactError,
        match=re.escape(
            f"format_version is {json.dumps(version)}, not a version genloom writes (1 to "
            f"{FORMAT_VERSION}); the model directory is damaged or not genloom's"
        ),
    ):
        genloom.load(model)


def test_a_directory_without_manifest_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="is not a genloom model: it has no manifest.json"):
        genloom.load(tmp_path)


def test_file_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="is not allowed"):
        write_artifact(
            tmp_path,
            {"../evil.bin": b"x"},
            generator="g",
            plugin="p",
            plugin_version="1",
            modality="image",
            config={},
            facts={},
        )


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_no_pickle_anywhere_in_the_code() -> None:
    root = Path(__file__).parents[1]
    sources = [p for d in ("sdk", "plugins", "exporters") for p in (root / d).rglob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", text, re.M), path
        assert not re.search(r"torch\.(save|load)\(", text), path
