"""Exports as loaders see them: only the directory's own hashed files open, tampering is one clear error, a killed
export leaves nothing that looks valid, and export failures say which graph and operator in one line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import genloom
import genloom_onnx.exporter
from genloom.errors import ArtifactError, ConfigError
from tests.conftest import assert_one_line_error, install_fake_distribution, run_cli

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0, "eval_every": 0}


def exporter() -> Any:
    return genloom.plugins.get_registry().exporter("onnx").value


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "gan"
    genloom.train("gan", "digits", out, progress=False, steps=5, **TINY)
    return out


@pytest.fixture(scope="module")
def exported(trained: Path) -> Path:
    exporter().export(trained, trained.with_name("gan-export"))
    return trained.with_name("gan-export")


def tampered(export: Path, tmp_path: Path, change: Any = None, **files: bytes) -> Path:
    """A copy of ``export`` with ``files`` written, ``change(manifest)`` applied, and every listed hash updated to
    match."""
    copy = Path(shutil.copytree(export, tmp_path / "tampered"))
    for name, data in files.items():
        (copy / name).write_bytes(data)
    manifest = json.loads((copy / "manifest.json").read_text())
    if change is not None:
        change(manifest)
    for name, record in manifest["files"].items():
        if (copy / name).is_file():
            data = (copy / name).read_bytes()
            record.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def assert_refused(directory: Path, *fragments: str, cli: bool = False) -> None:
    """``genloom.load`` raises one ArtifactError with every fragment; with ``cli``, ``genloom info`` exits 2 with it
    on one line."""
    with pytest.raises(ArtifactError) as raised:
        genloom.load(directory, providers="cpu")
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))
    if cli:
        assert_one_line_error(run_cli("info", str(directory)), *fragments)


def graph_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["export"]["graphs"][0]


# Item 3: every file a load opens is inside the directory and hashed.


def test_a_graph_file_outside_the_directory_is_refused(exported: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(exported / "generator.onnx", outside / "evil.onnx")
    relative = tampered(exported, tmp_path, lambda m: graph_entry(m).update(file="../outside/evil.onnx"))
    assert_refused(
        relative,
        "export.graphs[0].file is '../outside/evil.onnx', not a plain file name inside the model directory",
        cli=True,
    )
    shutil.rmtree(relative)
    absolute = tampered(exported, tmp_path, lambda m: graph_entry(m).update(file=str(outside / "evil.onnx")))
    assert_refused(absolute, "export.graphs[0].file", "not a plain file name")


def test_variants_and_the_tokenizer_must_be_listed_files(exported: Path, tmp_path: Path) -> None:
    unlisted = tampered(
        exported,
        tmp_path,
        lambda m: graph_entry(m)["variants"].update(int8="generator.int8.onnx"),
        **{"generator.int8.onnx": (exported / "generator.onnx").read_bytes()},
    )
    assert_refused(unlisted, "export.graphs[0].variants.int8 names 'generator.int8.onnx', which is not among the files")
    shutil.rmtree(unlisted)
    # The text drivers open their tokenizer only once it is checked the same way (the manifest is a text export's).
    options = {"tokenizer": "../tokenizer.json", "heads": 1, "head_dim": 1, "layers": 1, "context_length": 8}
    as_text = {"driver": "text-decoder", "driver_options": options}
    escaping = tampered(exported, tmp_path, lambda m: (m["export"].update(as_text), m.update(modality="text")))
    assert_refused(escaping, "export.driver_options.tokenizer is '../tokenizer.json', not a plain file name")


def external_data_graph(source: Path, location: str) -> bytes:
    """``source``'s graph with its first weight moved into external data at ``location``."""
    import onnx

    model = onnx.load(str(source))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model.SerializeToString()


def test_external_data_outside_the_listed_files_is_refused(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "evil.bin").write_bytes(b"\0" * 4096)
    escaping = tampered(
        exported,
        tmp_path,
        **{"generator.onnx": external_data_graph(exported / "generator.onnx", "../outside/evil.bin")},
    )
    assert_refused(
        escaping,
        "generator.onnx keeps weights in external data '../outside/evil.bin', which is not among the files",
        cli=True,
    )


@pytest.mark.timeout(120)
def test_an_export_with_external_data_lists_and_hashes_it(
    trained: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(genloom_onnx.exporter, "EXTERNAL_DATA_ABOVE_BYTES", 0)  # as a graph past 2 GiB would
    manifest = exporter().export(trained, tmp_path / "external")
    assert set(manifest.files) == {"generator.onnx", "generator.onnx.data"}
    model = genloom.load(tmp_path / "external", providers="cpu")
    np.testing.assert_array_equal(
        model.generate(n=2, seed=1).array, genloom.load(exported, providers="cpu").generate(n=2, seed=1).array
    )
    data = tmp_path / "external" / "generator.onnx.data"
    data.write_bytes(data.read_bytes()[:-1] + b"\1")
    with pytest.raises(ArtifactError, match="generator.onnx.data is corrupted"):
        genloom.load(tmp_path / "external")


# Item 11: tampered exports whose hashes were updated are one clear error.


def test_a_truncated_graph_is_one_clear_error(exported: Path, tmp_path: Path) -> None:
    graph = (exported / "generator.onnx").read_bytes()
    assert_refused(
        tampered(exported, tmp_path, **{"generator.onnx": graph[: len(graph) // 2]}),
        "generator.onnx is not a valid ONNX graph (truncated or damaged); re-export the model",
        cli=True,
    )


def test_a_graph_onnx_runtime_cannot_open_is_one_clear_error(exported: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(exported / "generator.onnx"))
    model.graph.node[0].op_type = "NoSuchOperator"
    assert_refused(
        tampered(exported, tmp_path, **{"generator.onnx": model.SerializeToString()}),
        "generator.onnx: ONNX Runtime cannot open this graph",
        "re-export the model",
    )


def test_an_export_section_without_graphs_names_the_field(exported: Path, tmp_path: Path) -> None:
    assert_refused(
        tampered(exported, tmp_path, lambda m: m["export"].update(graphs=[])),
        "field 'export.graphs'",
        "re-export the model",
    )


def test_a_torch_model_that_says_it_is_an_export_names_the_inconsistency(trained: Path, tmp_path: Path) -> None:
    assert_refused(
        tampered(trained, tmp_path, lambda m: m.update(kind="export")),
        "is inconsistent: kind is 'export' but it has no 'export' section",
        "set kind to 'model'",
        cli=True,
    )


# Item 7: a killed export leaves nothing that looks valid, and the next export clears it away.

PLUGIN = '''
import os, time
import genloom, numpy as np
from pydantic import Field


class TinyConfig(genloom.GeneratorConfig):
    latent_dim: int = Field(4, description="Latent size.")


class Images(genloom.ImageGenerator):
    """One linear layer from latents to 8x8 images; ``operator`` is what its forward applies."""
    name = "slow-images"
    modality = "image"
    Config = TinyConfig
    capabilities = genloom.Capabilities(exportable=True)

    @staticmethod
    def operator(images):
        return images

    def build(self):
        import torch
        operator = self.operator

        class Net(torch.nn.Module):
            def __init__(net):
                super().__init__()
                net.linear = torch.nn.Linear(4, 64)

            def forward(net, latents):
                return operator(torch.sigmoid(net.linear(latents))).view(-1, 1, 8, 8)
        return {"net": Net()}

    def configure_optimizers(self):
        import torch
        return {"net": torch.optim.SGD(self.modules["net"].parameters(), lr=0.01)}

    def train_step(self, batch, optimizers, step):
        return {"loss": 0.0}

    def sample(self, settings):
        import torch
        time.sleep(float(os.environ.get("SLOW_IMAGES_SECONDS", "0")))  # the export's end-to-end check samples
        latents = settings.rng().standard_normal((settings.n, 4), dtype=np.float32)
        return self.modules["net"](torch.from_numpy(latents)).clamp(0, 1).numpy()

    def export_spec(self):
        import torch
        return genloom.ExportSpec("image-from-latent", [genloom.GraphSpec(
            "generator", self.modules["net"], (torch.zeros(2, 4),), ["latents"], ["images"],
            {"latents": {0: "batch"}, "images": {0: "batch"}})])


class BranchyImages(Images):
    """The same, with a branch on the data, which torch.export cannot capture and TorchScript traces."""
    name = "branchy-images"

    @staticmethod
    def operator(images):
        return images if images.sum() > 0 else -images


class LgammaImages(Images):
    """The same, through torch.lgamma, an operator neither ONNX exporter converts."""
    name = "lgamma-images"

    @staticmethod
    def operator(images):
        import torch
        return torch.lgamma(images + 1)


@genloom.hookimpl
def register_generators(register):
    register(Images)
    register(BranchyImages)
    register(LgammaImages)
'''


@pytest.fixture
def plugin_models(site: Path, tmp_path: Path) -> dict[str, Path]:
    install_fake_distribution(site, "genloom-images", {"images": "fake_images"}, {"fake_images": PLUGIN})
    names = ("slow-images", "branchy-images", "lgamma-images")
    for name in names:
        genloom.train(name, "digits", tmp_path / name, progress=False, steps=1)
    return {name: tmp_path / name for name in names}


def staging_directories(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.is_dir())


@pytest.mark.timeout(240)
def test_a_killed_export_leaves_no_valid_looking_directory_and_the_next_export_cleans_up(
    plugin_models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "slow"
    command = [sys.executable, "-m", "genloom", "export", str(plugin_models["slow-images"]), "--out", str(out)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "SLOW_IMAGES_SECONDS": "60"}
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if out.parent.is_dir() and any((p / "manifest.json").is_file() for p in staging_directories(out)):
                break  # written, and now in the end-to-end check, which samples for a minute
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    (left,) = staging_directories(out)
    assert_one_line_error(run_cli("info", str(left)), "is an unfinished export", "delete it and export again")
    alive = out.parent / f".{out.name}.{os.getpid()}.abc123.partial"  # a live export's staging directory
    alive.mkdir()

    exporter().export(plugin_models["slow-images"], out)
    assert staging_directories(out) == [alive]
    assert genloom.load(out, providers="cpu").generate(n=2, seed=0).array.shape == (2, 8, 8, 1)


# Item 2: which exporter wrote each graph is recorded, and a fallback says why, once.


def test_a_fallback_to_torchscript_is_recorded_with_its_reason_and_warned_about_once(
    plugin_models: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    manifest = exporter().export(plugin_models["branchy-images"], tmp_path / "branchy")
    (graph,) = manifest.export.graphs
    assert graph.exporter == "torchscript"
    assert graph.fallback_reason.startswith("TorchExportError: Failed to export the model with torch.export.")
    assert capfd.readouterr().err.splitlines() == [
        f"genloom: warning: graph 'generator': the torch.export-based exporter failed ({graph.fallback_reason}); "
        "exported with the TorchScript exporter instead"
    ]
    assert (
        json.loads((tmp_path / "branchy" / "manifest.json").read_text())["export"]["graphs"][0]["exporter"]
        == "torchscript"
    )


# Item 12: an operator neither exporter converts is one line naming the graph and the operator.


@pytest.mark.timeout(240)
def test_an_operator_no_exporter_converts_is_one_line_with_the_trace_behind_verbose(
    plugin_models: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    model = plugin_models["lgamma-images"]
    result = run_cli("export", str(model), "--out", str(tmp_path / "plain"))
    assert_one_line_error(result, "graph 'generator': neither ONNX exporter", "operator aten::lgamma", "--verbose")
    assert result.stdout == "" and not (tmp_path / "plain").exists()

    from genloom.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["export", str(model), "--out", str(tmp_path / "verbose"), "--verbose"])
    assert exited.value.code == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert (
        lines[-1].startswith("genloom: error: graph 'generator': neither ONNX exporter") and "aten::lgamma" in lines[-1]
    )
    assert "Traceback" in "\n".join(lines) and "Torch IR graph at exception" in "\n".join(lines)


# Item 10: --out is checked before the export starts.


@pytest.mark.parametrize("kind", ["file", "non-empty directory", "below a file"])
def test_a_bad_out_is_refused_before_any_work(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    (tmp_path / "taken").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    out = {
        "file": tmp_path / "taken",
        "non-empty directory": tmp_path / "full",
        "below a file": tmp_path / "taken" / "export",
    }[kind]
    expected = {
        "file": "is a file, not a directory",
        "non-empty directory": "is not empty",
        "below a file": "is a file, so",
    }[kind]
    import genloom.artifacts

    monkeypatch.setattr(genloom, "load", lambda *a, **k: pytest.fail("the model was loaded before --out was checked"))
    with pytest.raises(ConfigError, match=f"--out: .*{expected}"):
        exporter().export(trained, out)
    if kind == "file":
        assert_one_line_error(run_cli("export", str(trained), "--out", str(out)), "--out:", expected)
