"""`genloom export DIR --exporter triton`: a Triton model repository whose every config.pbtxt parses as Triton's
ModelConfig and matches its ONNX graph; the text decoder refused in one line; and (where ../shared/triton is set
up) a real tritonserver that loads a model and answers."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

import genloom
from tests.conftest import assert_one_line_error, cli_in_process

TRITON_SHARED = Path(__file__).parents[1].parent / "shared" / "triton"
TRITON_HOME = Path(os.environ.get("TRITON_HOME") or Path(os.environ.get("TMPDIR") or "/tmp") / "genloom-triton")
ELEMENT_TYPES = {1: "TYPE_FP32", 7: "TYPE_INT64"}


def model_config_module() -> ModuleType:
    """Triton's ModelConfig protobuf from the tritonclient wheel (its grpc package needs grpcio; this file not)."""
    tritonclient = pytest.importorskip("tritonclient")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("triton")
    tiny = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}
    for name in ("gan", "cgan", "vae"):
        genloom.train(name, "digits", root / name, progress=False, steps=2, **tiny)
    genloom.train("gpt", "pydoc", root / "gpt", progress=False, steps=1, width=16, layers=1, heads=2,
                  context_length=16, vocab_size=260, tokenizer="char", eval_every=0)  # fmt: skip
    return {name: root / name for name in ("gan", "cgan", "vae", "gpt")}


@pytest.mark.parametrize("name", ["gan", "cgan", "vae"])
def test_every_config_parses_as_triton_modelconfig_and_matches_its_graph(
    trained: dict[str, Path], tmp_path: Path, name: str
) -> None:
    import onnx
    from google.protobuf import text_format

    config_pb2 = model_config_module()
    repository = tmp_path / "repo"
    made = cli_in_process("export", str(trained[name]), "--exporter", "triton", "--out", str(repository))
    assert made.returncode == 0, made.stderr
    models = sorted(path for path in repository.iterdir() if path.is_dir())
    assert models and all((model / "1" / "model.onnx").is_file() for model in models)
    for model in models:
        config = text_format.Parse((model / "config.pbtxt").read_text(), config_pb2.ModelConfig())
        assert config.name == model.name and config.backend == "onnxruntime" and config.max_batch_size == 64
        assert config.dynamic_batching.max_queue_delay_microseconds == 100
        assert [group.kind for group in config.instance_group] == [config_pb2.ModelInstanceGroup.KIND_CPU]
        graph = onnx.load(str(model / "1" / "model.onnx")).graph
        for declared, values in ((config.input, graph.input), (config.output, graph.output)):
            expected = [
                (value.name, ELEMENT_TYPES[value.type.tensor_type.elem_type],
                 [axis.dim_value or -1 for axis in value.type.tensor_type.shape.dim[1:]])
                for value in values
            ]  # fmt: skip
            served = [  # a (batch,) input is declared [1], reshaped to []
                (
                    t.name,
                    config_pb2.DataType.Name(t.data_type),
                    list(t.reshape.shape if t.HasField("reshape") else t.dims),
                )
                for t in declared
            ]
            assert served == expected


def test_the_text_decoder_is_refused_in_one_line(trained: dict[str, Path], tmp_path: Path) -> None:
    refused = cli_in_process("export", str(trained["gpt"]), "--exporter", "triton", "--out", str(tmp_path / "r"))
    assert_one_line_error(refused, "--exporter triton", "serve text with `genloom serve`")
    assert not any((tmp_path / "r").glob("*/config.pbtxt"))


def test_bad_triton_options_are_one_line(trained: dict[str, Path], tmp_path: Path) -> None:
    for option, fragment in (("instance=tpu", "neither 'cpu' nor 'gpu'"), ("max_batch_size=0", "at least 1")):
        refused = cli_in_process(
            "export", str(trained["gan"]), "--exporter", "triton", "--out", str(tmp_path / "r"), "--option", option
        )
        assert_one_line_error(refused, fragment)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_real_triton_server_loads_the_repository_and_answers(trained: dict[str, Path], tmp_path: Path) -> None:
    check = TRITON_SHARED / "serve_check.sh"
    if not check.is_file() or shutil.which("bash") is None:
        pytest.skip("no ../shared/triton here")
    if not (TRITON_HOME / "venv" / "bin" / "python").is_file():
        pytest.skip(f"Triton is not set up in {TRITON_HOME} (run ../shared/triton/setup.sh)")
    repository = tmp_path / "repo"
    made = cli_in_process("export", str(trained["cgan"]), "--exporter", "triton", "--out", str(repository))
    assert made.returncode == 0, made.stderr
    served = subprocess.run(
        ["bash", str(check), str(repository), "cgan", "3"], capture_output=True, text=True, timeout=150
    )
    assert served.returncode == 0, served.stdout + served.stderr
    assert "output images: float32 [3, 1, 8, 8] finite=True" in served.stdout and "OK" in served.stdout
