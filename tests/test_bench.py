"""The benchmark harness on tiny models: it runs every path and its JSON holds every figure (no time is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import genloom
from genloom.bench.flops import graph_flops
from genloom.bench.images import ImageRow
from genloom.bench.machine import Machine
from genloom.bench.text import TextRow
from genloom.runtime.providers import cuda_usable
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-models")
    corpus = root / "docs.txt"
    corpus.write_text(genloom.plugins.get_registry().open_data("pydoc").text[:20_000], encoding="utf-8")
    genloom.train("cgan", "digits", root / "cgan", progress=False, steps=2, width=8, latent_dim=8, sample_every=0)
    genloom.train("gpt", f"text:{corpus}", root / "gpt", progress=False, steps=2, width=32, layers=1, heads=2,
                  context_length=32, vocab_size=300, eval_every=0)
    return {"cgan": root / "cgan", "gpt": root / "gpt"}


@pytest.mark.parametrize(("name", "rows", "paths"), [
    ("cgan", "images", {"torch eager", "onnxruntime fp32"}),
    ("gpt", "text", {"transformers generate", "genloom torch (KV cache)", "onnxruntime fp32", "onnxruntime int8"}),
])
def test_bench_measures_every_path_and_writes_every_figure(models: dict[str, Path], tmp_path: Path, name: str, rows: str,
                                                           paths: set[str]) -> None:
    result = run_cli("bench", str(models[name]), "--repeats", "1", "--tokens", "2",
                     "--json", str(tmp_path / "bench.json"), "--chart", str(tmp_path / "bench.png"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["machine"]) == set(Machine.model_fields)
    assert report["machine"]["matmul_gflops"] > 0 and report["machine"]["read_gbytes_per_second"] > 0
    assert {"torch", "onnxruntime-gpu", "numpy"} <= set(report["machine"]["libraries"])
    row_fields = set((ImageRow if rows == "images" else TextRow).model_fields)
    assert report[rows] and all(set(row) == row_fields for row in report[rows])
    assert {row["path"] for row in report[rows]} == paths
    assert all(row["ratio_to_peer"] > 0 and row["share_of_roof"] > 0 for row in report[rows])  # CPU rows all have a roof
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "of roof" in result.stdout and report["provider"] in result.stdout


def test_flops_of_a_graph_are_counted_from_its_shapes(tmp_path: Path) -> None:
    import torch

    layer = torch.nn.Linear(16, 8)
    torch.onnx.export(layer, (torch.zeros(2, 16),), str(tmp_path / "linear.onnx"), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    assert graph_flops(tmp_path / "linear.onnx", {"batch": 1}) == 2 * 16 * 8
    assert graph_flops(tmp_path / "linear.onnx", {"batch": 4}) == 4 * 2 * 16 * 8


@pytest.mark.skipif(not cuda_usable(), reason="needs an NVIDIA GPU with CUDA libraries")
def test_on_a_gpu_bench_adds_fp16_rows_on_cuda(models: dict[str, Path]) -> None:
    from genloom.bench import bench_artifact

    for name, expected in (("cgan", {"torch eager", "onnxruntime fp32 (CUDA)", "onnxruntime fp16 (CUDA)"}),
                           ("gpt", {"transformers generate", "genloom torch (KV cache)", "onnxruntime fp32 (CUDA)",
                                    "onnxruntime int8", "onnxruntime fp16 (CUDA)"})):
        report = bench_artifact(models[name], repeats=1, tokens=2)
        rows = report.images or report.text
        assert report.provider == "CUDAExecutionProvider" and {row.path for row in rows} == expected
        assert all((row.share_of_roof is None) == ("CUDA" in row.path) for row in rows)  # the roofs are the CPU's
