"""The benchmark harness on tiny models: it runs every path and its JSON holds every figure (no time is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import genloom
from genloom.bench import images
from genloom.bench.flops import graph_flops
from genloom.bench.images import ImageRow
from genloom.bench.machine import Machine, describe_machine
from genloom.bench.report import chart, table
from genloom.bench.run import BenchReport, bench_artifact
from genloom.bench.text import TextRow
from genloom.model import TorchModel
from genloom.runtime.providers import cuda_usable
from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-models")
    corpus = root / "docs.txt"
    corpus.write_text(genloom.plugins.get_registry().open_data("pydoc").text[:20_000], encoding="utf-8")
    genloom.train("cgan", "digits", root / "cgan", progress=False, steps=2, width=8, latent_dim=8, sample_every=0)
    genloom.train(
        "gpt",
        f"text:{corpus}",
        root / "gpt",
        progress=False,
        steps=2,
        width=32,
        layers=1,
        heads=2,
        context_length=32,
        vocab_size=300,
        eval_every=0,
    )
    return {"cgan": root / "cgan", "gpt": root / "gpt"}


@pytest.fixture(scope="module")
def machine() -> Machine:
    return describe_machine(repeats=1)


@pytest.mark.parametrize(
    ("name", "rows", "paths"),
    [
        ("cgan", "images", {"torch eager (bare module)", "onnxruntime fp32"}),
        (
            "gpt",
            "text",
            {"transformers generate", "genloom torch", "onnxruntime fp32", "onnxruntime int8", "onnxruntime q8"},
        ),
    ],
)
def test_bench_measures_every_path_and_writes_every_figure(
    models: dict[str, Path], tmp_path: Path, name: str, rows: str, paths: set[str]
) -> None:
    result = run_cli(
        "bench",
        str(models[name]),
        "--repeats",
        "1",
        "--tokens",
        "2",
        "--json",
        str(tmp_path / "bench.json"),
        "--chart",
        str(tmp_path / "bench.png"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["machine"]) == set(Machine.model_fields)
    assert report["machine"]["matmul_gflops"] > 0 and report["machine"]["read_gbytes_per_second"] > 0
    assert report["machine"]["busy_elsewhere"] >= 0  # Linux has /proc/stat
    assert {"torch", "onnxruntime-gpu", "numpy"} <= set(report["machine"]["libraries"])
    row_fields = set((ImageRow if rows == "images" else TextRow).model_fields)
    assert report[rows] and all(set(row) == row_fields for row in report[rows])
    assert {row["path"] for row in report[rows]} == paths
    assert all(
        row["ratio_to_peer"] > 0 and row["share_of_roof"] > 0 for row in report[rows]
    )  # CPU rows all have a roof
    assert report["peer_unavailable"] == []
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "of roof" in result.stdout and report["provider"] in result.stdout


def test_the_image_peer_is_the_bare_exported_module_not_genloom_s_wrapper(
    models: dict[str, Path], machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    timing: list[bool] = []  # non-empty while bench times a path (the export's own checks may use the wrapper)
    real_time_call, real_generate = images.time_call, TorchModel.generate

    def time_call(call: Any, **options: Any) -> Any:
        timing.append(True)
        try:
            return real_time_call(call, **options)
        finally:
            timing.pop()

    def generate(self: TorchModel, **settings: Any) -> Any:
        assert not timing, "the peer was timed through genloom's TorchModel.generate"
        return real_generate(self, **settings)

    monkeypatch.setattr(images, "time_call", time_call)
    monkeypatch.setattr(TorchModel, "generate", generate)
    report = bench_artifact(models["cgan"], repeats=1, machine=machine, batches=(2,))
    peer, onnx = report.images
    assert (peer.path, onnx.path) == ("torch eager (bare module)", "onnxruntime fp32")
    assert peer.ratio_to_peer == 1.0 and onnx.ratio_to_peer == pytest.approx(
        onnx.images_per_second / peer.images_per_second
    )


def test_without_transformers_the_text_peer_is_unavailable_and_no_row_has_a_ratio(
    models: dict[str, Path], machine: Machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    report = bench_artifact(models["gpt"], repeats=1, tokens=2, machine=machine, batches=(1,))
    assert {row.path for row in report.text} == {
        "genloom torch",
        "onnxruntime fp32",
        "onnxruntime int8",
        "onnxruntime q8",
    }
    assert all(row.ratio_to_peer is None for row in report.text)
    assert (
        len(report.peer_unavailable) == 1
        and "peer unavailable: transformers is not installed" in report.peer_unavailable[0]
    )
    printed = table(report)
    assert "peer unavailable: transformers is not installed" in printed
    assert all(
        line.split()[-2] == "-" for line in printed.splitlines() if "tokens/s" not in line and "ms/" in line
    )  # x peer column
    assert chart(report, tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_the_table_warns_when_other_processes_were_busy(machine: Machine) -> None:
    quiet, busy = (
        BenchReport(machine=machine.model_copy(update={"busy_elsewhere": cores}), provider="CPUExecutionProvider")
        for cores in (0.0, 1.5)
    )
    assert "other processes used" not in table(quiet)
    assert "note: other processes used 1.5 of the" in table(busy)


@pytest.mark.parametrize(
    ("option", "target", "complaint"),
    [
        ("--json", "", "is a directory"),
        ("--chart", "a-file/chart.png", "is a file"),
    ],
)
def test_bench_outputs_are_checked_before_the_benchmark_runs(
    models: dict[str, Path], tmp_path: Path, option: str, target: str, complaint: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    result = run_cli("bench", str(models["cgan"]), option, str(tmp_path / target))
    assert_one_line_error(result, option, complaint)
    assert result.stdout == ""  # no table: nothing was measured
    assert sorted(tmp_path.rglob("*")) == before


def test_flops_of_a_graph_are_counted_from_its_shapes(tmp_path: Path) -> None:
    import torch

    layer = torch.nn.Linear(16, 8)
    torch.onnx.export(
        layer,
        (torch.zeros(2, 16),),
        str(tmp_path / "linear.onnx"),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    assert graph_flops(tmp_path / "linear.onnx", {"batch": 1}) == 2 * 16 * 8
    assert graph_flops(tmp_path / "linear.onnx", {"batch": 4}) == 4 * 2 * 16 * 8


@pytest.mark.skipif(not cuda_usable(), reason="needs an NVIDIA GPU with CUDA libraries")
def test_on_a_gpu_bench_adds_fp16_rows_on_cuda(models: dict[str, Path]) -> None:
    import torch

    torch_on_cuda = " (CUDA)" if torch.cuda.is_available() else ""
    for name, expected in (
        ("cgan", {f"torch eager (bare module){torch_on_cuda}", "onnxruntime fp32 (CUDA)", "onnxruntime fp16 (CUDA)"}),
        (
            "gpt",
            {
                f"transformers generate{torch_on_cuda}",
                "genloom torch",
                "onnxruntime fp32 (CUDA)",
                "onnxruntime int8",
                "onnxruntime q8",
                "onnxruntime fp16 (CUDA)",
            },
        ),
    ):
        report = bench_artifact(models[name], repeats=1, tokens=2)
        rows = report.images or report.text
        assert report.provider == "CUDAExecutionProvider" and {row.path for row in rows} == expected
        assert all((row.share_of_roof is None) == ("CUDA" in row.path) for row in rows)  # the roofs are the CPU's
        assert all(row.ratio_to_peer for row in rows)  # the peers run on the GPU too, where torch can
