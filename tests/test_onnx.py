"""ONNX export of the image generators, and the torch-free runtime that runs the exports."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import genloom
from genloom import textgen
from genloom.errors import ArtifactError, ConfigError, GenloomError
from genloom.runtime.providers import cuda_usable
from genloom.sampling import TextSampling
from tests.conftest import assert_one_line_error, run_cli

TINY = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0, "eval_every": 0}


def train_each(names: tuple[str, ...], data: str, root: Path, **config: object) -> dict[str, Path]:
    for name in names:
        genloom.train(name, data, root / name, progress=False, **config)
    return {name: root / name for name in names}


def export_each(models: dict[str, Path], root: Path) -> dict[str, Path]:
    exporter = genloom.plugins.get_registry().exporter("onnx").value
    for name, model_dir in models.items():
        exporter.export(model_dir, root / name)
    return {name: root / name for name in models}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_each(
        ("gan", "cgan", "vae", "cvae"), "digits", tmp_path_factory.mktemp("torch-models"), steps=30, **TINY
    )


@pytest.fixture(scope="module")
def exported(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_each(trained, tmp_path_factory.mktemp("exports"))


def test_an_export_is_self_describing_with_measured_parity(exported: dict[str, Path]) -> None:
    import onnx

    manifest = json.loads((exported["cvae"] / "manifest.json").read_text())
    assert manifest["kind"] == "export" and manifest["export"]["driver"] == "image-from-latent"
    assert [g["name"] for g in manifest["export"]["graphs"]] == ["sampler", "decoder", "encoder"]
    assert set(manifest["files"]) == {"sampler.onnx", "decoder.onnx", "encoder.onnx"}
    assert all(0 <= d <= 1e-4 for d in manifest["export"]["parity_max_abs_diff"].values())
    metadata = {p.key: p.value for p in onnx.load(str(exported["cvae"] / "decoder.onnx")).metadata_props}
    assert metadata["genloom.generator"] == "cvae" and metadata["genloom.driver"] == "image-from-latent"
    assert metadata["genloom.graph"] == "decoder" and len(metadata["genloom.source_sha256"]) == 64


@pytest.mark.parametrize("name", ["gan", "cgan", "vae", "cvae"])
def test_the_runtime_generates_what_torch_generates_for_the_same_seed(
    trained: dict[str, Path], exported: dict[str, Path], name: str
) -> None:
    labels = {"labels": [1, 7, 3]} if name.startswith("c") else {}
    from_torch = genloom.load(trained[name]).generate(n=5, seed=3, **labels)
    onnx_model = genloom.load(exported[name], providers="cpu")
    from_onnx = onnx_model.generate(n=5, seed=3, **labels)
    np.testing.assert_allclose(from_onnx.array, from_torch.array, atol=1e-4, rtol=0)
    assert from_onnx.provenance.seed == 3 and onnx_model.info()["provider"] == "CPUExecutionProvider"


def test_labels_are_checked_the_same_way(exported: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="labels: 10 is not a trained class; use 0..9"):
        genloom.load(exported["cgan"], providers="cpu").generate(n=2, labels=[10])
    with pytest.raises(ConfigError, match="'gan' is unconditional; drop labels"):
        genloom.load(exported["gan"], providers="cpu").generate(n=2, labels=[1])


def test_loading_and_generating_from_exports_never_imports_torch(
    exported: dict[str, Path], text_exports: dict[str, Path]
) -> None:
    program = (
        "import sys, genloom\n"
        f"images = genloom.load({str(exported['cgan'])!r}).generate(n=4, seed=0, labels=[2])\n"
        f"text = genloom.load({str(text_exports['gpt'])!r}, providers='cpu')\n"
        "pieces = list(text.stream(prompt='The', max_new_tokens=5, do_sample=True, seed=0))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(images.array.shape, len(pieces) > 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["(4,", "8,", "8,", "1)", "True"]
    # Without CUDA, 'auto' says so in one line instead of ONNX Runtime's load errors.
    if not cuda_usable():
        assert run.stderr.strip().splitlines() == [
            "genloom: CUDA is not usable on this machine (no GPU or no CUDA libraries); ONNX Runtime runs on the CPU"
        ]


TEXT = {
    "width": 32,
    "layers": 2,
    "context_length": 32,
    "batch_size": 8,
    "vocab_size": 300,
    "eval_every": 0,
    "warmup_steps": 5,
}


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    corpus = root / "docs.txt"
    corpus.write_text(genloom.plugins.get_registry().open_data("pydoc").text[:30_000], encoding="utf-8")
    return train_each(("gpt", "lstm"), f"text:{corpus}", root, steps=40, **TEXT)


@pytest.fixture(scope="module")
def text_exports(text_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_each(text_models, tmp_path_factory.mktemp("text-exports"))


@pytest.fixture(scope="module")
def portable_gpt(text_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GPT exported with ``portable=True``: standard ONNX operators, the cache extended by concatenation."""
    out = tmp_path_factory.mktemp("portable") / "gpt"
    genloom.plugins.get_registry().exporter("onnx").value.export(text_models["gpt"], out, portable=True)
    return out


CACHE_NAMES = ["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]
PRESENT_NAMES = ["present.0.key", "present.0.value", "present.1.key", "present.1.value"]


def test_the_gpt_exports_one_fused_decoder_graph_with_an_in_place_cache(text_exports: dict[str, Path]) -> None:
    import onnx

    manifest = json.loads((text_exports["gpt"] / "manifest.json").read_text())
    assert manifest["export"]["driver"] == "text-decoder" and set(manifest["files"]) == {
        "decoder.onnx",
        "tokenizer.json",
        "genai_config.json",
        "tokenizer_config.json",
    }
    assert manifest["export"]["driver_options"]["cache"] == "in-place"
    assert manifest["export"]["graphs"][0]["exporter"] == "plugin"
    graph = onnx.load(str(text_exports["gpt"] / "decoder.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", *CACHE_NAMES]
    assert [o.name for o in graph.output] == ["logits", *PRESENT_NAMES]
    operators = [(node.domain, node.op_type) for node in graph.node]
    assert operators.count(("com.microsoft", "GroupQueryAttention")) == 2  # one fused attention per layer
    assert ("", "Softmax") not in operators
    for name in (*CACHE_NAMES, *PRESENT_NAMES):  # past and present: one buffer shape, so they can be one buffer
        value = next(v for v in [*graph.input, *graph.output] if v.name == name)
        assert [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim][2] == "capacity"
    assert manifest["export"]["parity_max_abs_diff"]["decoder"] <= 1e-4
    metadata = {p.key: p.value for p in onnx.load(str(text_exports["lstm"] / "recurrent.onnx")).metadata_props}
    assert metadata["genloom.driver"] == "text-recurrent" and metadata["genloom.tokenizer"] == "tokenizer.json"


def test_the_portable_gpt_export_has_only_standard_operators_and_decodes_the_same_tokens(
    text_models: dict[str, Path], text_exports: dict[str, Path], portable_gpt: Path
) -> None:
    import onnx

    manifest = json.loads((portable_gpt / "manifest.json").read_text())
    assert "cache" not in manifest["export"]["driver_options"]
    assert set(manifest["files"]) == {"decoder.onnx", "tokenizer.json"}
    graph = onnx.load(str(portable_gpt / "decoder.onnx")).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}
    request = {"prompt": ["The", "A much longer prompt than that", ""], "max_new_tokens": 12}
    want = genloom.load(text_models["gpt"]).generate(**request).tokens
    assert genloom.load(portable_gpt, providers="cpu").generate(**request).tokens == want
    assert genloom.load(text_exports["gpt"], providers="cpu").generate(**request).tokens == want


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_the_runtime_decodes_the_same_tokens_as_torch(
    text_models: dict[str, Path], text_exports: dict[str, Path], name: str
) -> None:
    torch_model, onnx_model = genloom.load(text_models[name]), genloom.load(text_exports[name], providers="cpu")
    for knobs in ({}, {"do_sample": True, "top_p": 0.9, "seed": 4, "num_return_sequences": 2}):
        request = {"prompt": ["The", "A much longer prompt than that", ""], "max_new_tokens": 12, **knobs}
        assert onnx_model.generate(**request).tokens == torch_model.generate(**request).tokens
    single = {"prompt": "The", "max_new_tokens": 12, "do_sample": True, "seed": 9}
    assert "".join(onnx_model.stream(**single)) == torch_model.generate(**single).text


def test_every_traced_builtin_graph_is_written_by_the_torch_export_based_exporter(
    exported: dict[str, Path],
    text_exports: dict[str, Path],
    portable_gpt: Path,
    text_models: dict[str, Path],
    tmp_path: Path,
) -> None:
    traced = [*exported.values(), text_exports["lstm"], portable_gpt]
    for export in traced:
        graphs = json.loads((export / "manifest.json").read_text())["export"]["graphs"]
        assert [(g["exporter"], g.get("fallback_reason")) for g in graphs] == [("torch.export", None)] * len(graphs), (
            export.name
        )
    # The compact portable GPT graph the benchmarks describe:
    # a third of what the TorchScript exporter writes for the same module.
    import onnx
    import torch

    spec = genloom.load(text_models["gpt"]).generator.export_spec().portable
    assert spec is not None
    graph = spec.graphs[0]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes on tracing
        torch.onnx.export(
            graph.module,
            graph.example_inputs,
            str(tmp_path / "torchscript.onnx"),
            dynamo=False,
            opset_version=20,
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_axes=graph.dynamic_axes,
        )
    torchscript_nodes = len(onnx.load(str(tmp_path / "torchscript.onnx")).graph.node)
    exported_nodes = len(onnx.load(str(portable_gpt / "decoder.onnx")).graph.node)
    assert exported_nodes < 0.5 * torchscript_nodes, (exported_nodes, torchscript_nodes)
    fused_nodes = len(onnx.load(str(text_exports["gpt"] / "decoder.onnx")).graph.node)
    assert fused_nodes < 0.6 * exported_nodes, (fused_nodes, exported_nodes)


def test_a_graph_from_another_export_is_refused_naming_what_the_driver_needs(
    exported: dict[str, Path], text_exports: dict[str, Path], tmp_path: Path
) -> None:
    import hashlib
    import shutil

    def swapped(export: Path, graph_file: str, other: Path) -> Path:
        copy = Path(shutil.copytree(export, tmp_path / export.name))
        shutil.copy(other, copy / graph_file)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"][graph_file] = {
            "sha256": hashlib.sha256(other.read_bytes()).hexdigest(),
            "size": other.stat().st_size,
        }
        (copy / "manifest.json").write_text(json.dumps(manifest))
        return copy

    gan_with_gpt = swapped(exported["gan"], "generator.onnx", text_exports["gpt"] / "decoder.onnx")
    with pytest.raises(
        ArtifactError,
        match=r"graph 'generator' has inputs \['input_ids', .*the 'image-from-latent' driver needs "
        r"inputs \['latents'\] and outputs \['images'\]",
    ):
        genloom.load(gan_with_gpt, providers="cpu")
    gpt_with_gan = swapped(text_exports["gpt"], "decoder.onnx", exported["gan"] / "generator.onnx")
    with pytest.raises(
        ArtifactError,
        match="graph 'decoder' has inputs \\['latents'\\] .*the 'text-decoder' driver needs inputs input_ids",
    ):
        genloom.load(gpt_with_gan, providers="cpu")
    lstm_with_gpt = swapped(text_exports["lstm"], "recurrent.onnx", text_exports["gpt"] / "decoder.onnx")
    with pytest.raises(
        ArtifactError, match="graph 'recurrent' .*the 'text-recurrent' driver needs inputs input_ids, state.h, state.c"
    ):
        genloom.load(lstm_with_gpt, providers="cpu")


def test_each_new_token_is_one_run_over_one_position_of_the_portable_graph(portable_gpt: Path) -> None:
    model = genloom.load(portable_gpt, providers="cpu")
    runs: list[dict[str, tuple[int, ...]]] = []
    session = model.onnx

    class RecordingSession:
        def __getattr__(self, name: str) -> object:
            return getattr(session, name)

        def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            runs.append({name: array.shape for name, array in feeds.items()})
            return session.run(output_names, feeds)

    model.onnx = RecordingSession()
    new_tokens = model.generate(prompt=["The", "Three more words"], max_new_tokens=6).tokens
    prompt_length, steps = runs[0]["input_ids"][1], max(len(t) for t in new_tokens)
    assert runs[0]["past_key_values.0.key"][2] == 0  # the prompt runs once, with zero-length past tensors
    assert [(r["input_ids"][1], r["past_key_values.0.key"][2]) for r in runs[1:]] == [
        (1, prompt_length + i) for i in range(len(runs) - 1)
    ]
    assert len(runs) == steps  # one run per generated token, none wasted


def test_the_fused_graph_decodes_in_one_buffer_that_no_step_reallocates(text_exports: dict[str, Path]) -> None:
    model = genloom.load(text_exports["gpt"], providers="cpu")
    session = model.onnx
    runs: list[tuple[tuple[int, ...], list[int]]] = []  # per run: the logits' shape, the presents' addresses

    class RecordingSession:
        def __getattr__(self, name: str) -> object:
            return getattr(session, name)

        def run_with_iobinding(self, binding: Any) -> None:
            session.run_with_iobinding(binding)
            logits, *presents = binding.get_outputs()
            runs.append((tuple(logits.shape()), [present.data_ptr() for present in presents]))

    model.onnx = RecordingSession()
    request = {"prompt": ["The", "Three more words"], "max_new_tokens": 6, "min_new_tokens": 6}
    tokens = model.generate(**request).tokens
    assert len(runs) == 6  # the prompt, then one run per new token after the first
    assert len({tuple(addresses) for _, addresses in runs}) == 1  # the same buffers at every step
    assert {shape[:2] for shape, _ in runs[1:]} == {(2, 1)}  # one position per step
    assert tokens == genloom.load(text_exports["gpt"], providers="cpu").generate(**request).tokens


def test_onnx_runtime_genai_generates_the_same_greedy_tokens_from_the_export_folder(
    text_exports: dict[str, Path],
) -> None:
    import onnxruntime_genai as og

    export = text_exports["gpt"]
    model = genloom.load(export, providers="cpu")
    genai = og.Model(str(export))
    tokenizer = og.Tokenizer(genai)
    for prompt in ("The", "Return the value of"):
        ids = [model.tokenizer.end_of_text, *model.tokenizer.encode(prompt)]
        assert list(tokenizer.encode(prompt)) == ids[1:]  # GenAI reads the export's tokenizer as it is
        new = 12
        params = og.GeneratorParams(genai)
        params.set_search_options(max_length=len(ids) + new, min_length=len(ids) + new, do_sample=False)
        generator = og.Generator(genai, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        from_genai = [int(t) for t in generator.get_sequence(0)][len(ids) :]
        result = model.generate(prompt=prompt, max_new_tokens=new, min_new_tokens=new)
        assert from_genai == result.tokens[0]
        assert tokenizer.decode(from_genai) == result.text


@pytest.mark.skipif(cuda_usable(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(exported: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="providers='cuda': ONNX Runtime cannot run on CUDA here"):
        genloom.load(exported["gan"], providers="cuda")
    with pytest.raises(ConfigError, match="providers: 'tpu' is not one of 'auto', 'cuda', 'cpu'"):
        genloom.load(exported["gan"], providers="tpu")


@pytest.mark.skipif(not cuda_usable(), reason="needs an NVIDIA GPU with CUDA libraries")
def test_on_a_gpu_exports_run_on_cuda_and_match_the_cpu(
    exported: dict[str, Path], text_models: dict[str, Path], tmp_path: Path
) -> None:
    on_gpu = genloom.load(exported["cgan"], providers="cuda")
    assert on_gpu.info()["provider"] == "CUDAExecutionProvider"
    on_cpu = genloom.load(exported["cgan"], providers="cpu")
    np.testing.assert_allclose(on_gpu.generate(n=64, seed=1).array, on_cpu.generate(n=64, seed=1).array, atol=1e-4)
    genloom.plugins.get_registry().exporter("onnx").value.export(text_models["gpt"], tmp_path / "gpt", fp16=True)
    request = {"prompt": ["The", "A longer prompt"], "max_new_tokens": 10}
    expected = genloom.load(tmp_path / "gpt", providers="cpu").generate(**request).tokens
    assert (
        genloom.load(tmp_path / "gpt", providers="cuda").generate(**request).tokens == expected
    )  # IO binding on the GPU
    half = genloom.load(tmp_path / "gpt", providers="cuda", precision="fp16")
    assert half.info()["provider"] == "CUDAExecutionProvider" and len(half.generate(**request).tokens) == 2


def test_session_options_are_the_users_to_set(exported: dict[str, Path]) -> None:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = genloom.load(exported["gan"], providers="cpu", session_options=options)
    assert model.sessions["generator"].get_session_options().intra_op_num_threads == 1
    default = genloom.load(exported["gan"], providers="cpu")
    np.testing.assert_allclose(model.generate(n=2, seed=0).array, default.generate(n=2, seed=0).array, atol=1e-5)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_one_model_serves_many_threads_without_new_sessions(
    exported: dict[str, Path], text_exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "image":
        model = genloom.load(exported["cgan"], providers="cpu")
        calls = [{"n": 1 + (i % 5), "seed": i, "labels": [i % 10]} for i in range(50)]

        def output(call: dict) -> object:
            return model.generate(**call).array.tobytes()
    else:
        model = genloom.load(text_exports["gpt"], providers="cpu")
        calls = [
            {"prompt": ["The", "A list"][: 1 + i % 2], "max_new_tokens": 4, "do_sample": True, "seed": i}
            for i in range(50)
        ]

        def output(call: dict) -> object:
            return model.generate(**call).tokens

    serial = [output(c) for c in calls]
    import genloom.runtime.providers as providers

    monkeypatch.setattr(providers, "create_session", lambda *a, **k: pytest.fail("a session was created per call"))
    results: dict[tuple[int, int], object] = {}

    def worker(thread: int) -> None:
        for index, call in enumerate(calls):
            results[(thread, index)] = output(call)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16 * 50
    assert all(results[(t, i)] == serial[i] for t in range(16) for i in range(50))


def test_export_refuses_what_it_cannot_do(trained: dict[str, Path], exported: dict[str, Path], tmp_path: Path) -> None:
    exporter = genloom.plugins.get_registry().exporter("onnx").value
    with pytest.raises(ConfigError, match="--out: .* is not empty; give a new or empty directory"):
        exporter.export(trained["gan"], exported["gan"])
    with pytest.raises(ConfigError, match="opset: 9 is not supported; use 17 to 22"):
        exporter.export(trained["gan"], tmp_path / "x", opset=9)


THIRD_PARTY = '''
import genloom, numpy as np
from pydantic import Field

class NoiseConfig(genloom.GeneratorConfig):
    latent_dim: int = Field(4, description="Latent size.")
    wobble: float = Field(0.0, description="Random noise the network adds (breaks ONNX parity).")

class LinearImages(genloom.ImageGenerator):
    """Third-party: one linear layer from latents to 8x8 images."""
    name = "linear-images"
    modality = "image"
    Config = NoiseConfig
    capabilities = genloom.Capabilities(exportable=True)

    def build(self):
        import torch
        class Net(torch.nn.Module):
            def __init__(net, wobble):
                super().__init__(); net.linear = torch.nn.Linear(4, 64); net.wobble = wobble
            def forward(net, latents):
                images = torch.sigmoid(net.linear(latents)).view(-1, 1, 8, 8)
                return images + net.wobble * torch.rand_like(images)
        return {"net": Net(self.config.wobble)}

    def configure_optimizers(self):
        import torch
        return {"net": torch.optim.SGD(self.modules["net"].parameters(), lr=0.01)}

    def train_step(self, batch, optimizers, step):
        return {"loss": 0.0}

    def sample(self, settings):
        import torch
        latents = settings.rng().standard_normal((settings.n, 4), dtype=np.float32)
        return self.modules["net"](torch.from_numpy(latents)).clamp(0, 1).numpy()

    def export_spec(self):
        import torch
        return genloom.ExportSpec("image-from-latent", [genloom.GraphSpec(
            "generator", self.modules["net"], (torch.zeros(2, 4),), ["latents"], ["images"],
            {"latents": {0: "batch"}, "images": {0: "batch"}})])

@genloom.hookimpl
def register_generators(register):
    register(LinearImages)
'''


def test_a_third_party_generator_exports_through_the_same_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "third_party_images.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import third_party_images

    genloom.plugins.register(third_party_images, name="third-party-images")
    exporter = genloom.plugins.get_registry().exporter("onnx").value
    genloom.train("linear-images", "digits", tmp_path / "model", progress=False, steps=1)
    exporter.export(tmp_path / "model", tmp_path / "export")
    np.testing.assert_allclose(
        genloom.load(tmp_path / "export", providers="cpu").generate(n=3, seed=1).array,
        genloom.load(tmp_path / "model").generate(n=3, seed=1).array,
        atol=1e-5,
    )

    genloom.train("linear-images", "digits", tmp_path / "noisy", progress=False, steps=1, wobble=0.5)
    with pytest.raises(
        GenloomError, match="graph 'generator': ONNX Runtime differs from PyTorch by up to .*; nothing was written"
    ):
        exporter.export(tmp_path / "noisy", tmp_path / "noisy-export")
    assert not (tmp_path / "noisy-export").exists() and not list(tmp_path.glob(".noisy-export*"))


def test_fp16_and_int8_variants_report_their_error(trained: dict[str, Path], tmp_path: Path) -> None:
    exporter = genloom.plugins.get_registry().exporter("onnx").value
    manifest = exporter.export(trained["cgan"], tmp_path / "cgan", fp16=True, int8=True)
    variants = manifest.export.variants
    assert set(variants) == {"fp16", "int8"} and all(0 < v.max_abs_diff["generator"] < 0.2 for v in variants.values())
    reference = genloom.load(tmp_path / "cgan", providers="cpu").generate(n=4, seed=0, labels=[5]).array
    for precision in ("fp16", "int8"):
        model = genloom.load(tmp_path / "cgan", providers="cpu", precision=precision)
        assert np.abs(model.generate(n=4, seed=0, labels=[5]).array - reference).max() < 0.2
    from genloom_onnx.exporter import _max_difference  # the parity gate's inputs are seeded: its figures reproduce

    graph = genloom.load(trained["cgan"]).generator.export_spec().graphs[0]
    remeasured = _max_difference(graph, tmp_path / "cgan" / "generator.int8.onnx", int(manifest.facts["num_classes"]))
    assert remeasured == variants["int8"].max_abs_diff["generator"]
    exporter.export(trained["gan"], tmp_path / "plain")
    with pytest.raises(ConfigError, match="precision: this export has fp32, not 'int8'; re-export with --int8"):
        genloom.load(tmp_path / "plain", precision="int8")


def test_text_variants_report_the_change_in_validation_perplexity(text_models: dict[str, Path], tmp_path: Path) -> None:
    exporter = genloom.plugins.get_registry().exporter("onnx").value
    manifest = exporter.export(text_models["gpt"], tmp_path / "gpt", fp16=True, int8=True)
    assert set(manifest.export.variants) == {"fp16", "int8"}
    for figures in manifest.export.variants.values():
        assert figures.validation_perplexity_fp32 > 1
        assert figures.validation_perplexity == pytest.approx(figures.validation_perplexity_fp32, rel=0.05)
    with pytest.raises(ConfigError, match="--fp16: ONNX Runtime cannot run this graph's LSTM in half precision"):
        exporter.export(text_models["lstm"], tmp_path / "lstm", fp16=True)
    assert not (tmp_path / "lstm").exists()


def test_a_small_text_export_decodes_on_one_thread_unless_the_user_says_otherwise(
    text_exports: dict[str, Path],
) -> None:
    import onnxruntime

    assert genloom.load(text_exports["gpt"], providers="cpu").onnx.get_session_options().intra_op_num_threads == 1
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    assert (
        genloom.load(text_exports["gpt"], providers="cpu", session_options=options)
        .onnx.get_session_options()
        .intra_op_num_threads
        == 2
    )


def test_block_wise_variants_record_their_error_and_agreement_and_generate(
    text_models: dict[str, Path], tmp_path: Path
) -> None:
    import onnx

    out = tmp_path / "blocks"
    done = run_cli("export", str(text_models["gpt"]), "--out", str(out), "--q8", "--q4")
    assert done.returncode == 0, done.stderr
    assert "q4: max |onnxruntime - torch|" in done.stdout and "of the variant checks equal to fp32" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    fp32 = genloom.load(out, providers="cpu").generate(prompt="The", max_new_tokens=8)
    for precision in ("q8", "q4"):
        figures = manifest["export"]["variants"][precision]
        assert 0 < figures["max_abs_diff"]["decoder"] < 1.0
        assert 0.0 <= figures["agreement_with_fp32"] <= 1.0
        assert figures["validation_perplexity"] > 1.0
        graph = onnx.load(str(out / f"decoder.{precision}.onnx")).graph
        quantized = [n for n in graph.node if n.op_type == "MatMulNBits"]
        assert len(quantized) == 2 * 4 + 1  # every weight MatMul of the 2 layers, and the output head
        assert {a.i for n in quantized for a in n.attribute if a.name == "bits"} == {int(precision[1:])}
        result = genloom.load(out, providers="cpu", precision=precision).generate(prompt="The", max_new_tokens=8)
        assert len(result.tokens[0]) == len(fp32.tokens[0])
    assert manifest["export"]["variants"]["q8"]["agreement_with_fp32"] == 1.0  # 8 bits: the tiny model's tokens hold


def test_a_block_size_that_is_not_a_power_of_two_is_refused_before_the_export(
    text_models: dict[str, Path], tmp_path: Path
) -> None:
    done = run_cli("export", str(text_models["gpt"]), "--out", str(tmp_path / "x"), "--q8", "--option", "block_size=24")
    assert_one_line_error(done, "block_size: 24 is not a power of two from 16")
    assert not (tmp_path / "x").exists()


FP16_FLIP_EPSILON = 0.05
"""Where fp32's top-two logit gap is under this, half precision may pick the other token (a flip, counted)."""


@pytest.mark.skipif(not cuda_usable(), reason="needs an NVIDIA GPU with CUDA libraries")
def test_the_fused_fp16_graph_decodes_with_its_in_place_cache_on_cuda(
    text_models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "fp16"
    genloom.plugins.get_registry().exporter("onnx").value.export(text_models["gpt"], out, fp16=True)
    on_cuda = genloom.load(out, providers="cuda", precision="fp16")
    assert on_cuda.provider == "cuda"
    request = {"prompt": ["The", "A much longer prompt than that"], "max_new_tokens": 12, "min_new_tokens": 12}
    tokens = on_cuda.generate(**request).tokens
    assert [len(row) for row in tokens] == [12, 12]
    fp32 = genloom.load(out, providers="cpu")
    sequence = np.array([[fp32.tokenizer.end_of_text, *fp32.tokenizer.encode("The"), *tokens[0][:-1]]])
    want = fp32.session().start(sequence, np.ones_like(sequence), every_position=True)[0]
    got = on_cuda.session().start(sequence, np.ones_like(sequence), every_position=True)[0]
    top_two = np.sort(want, axis=-1)[:, -2:]
    differ = want.argmax(-1) != got.argmax(-1)
    close = top_two[:, 1] - top_two[:, 0] < FP16_FLIP_EPSILON
    assert not (differ & ~close).any(), f"{int((differ & ~close).sum())} tokens differ where fp32 is sure"
    print(f"fp16 on CUDA: {int((differ & close).sum())} flips in {len(differ)} positions")


JOINING = [
    TextSampling(prompt="The", max_new_tokens=20, min_new_tokens=12),  # held from ending while others are not
    TextSampling(prompt=["A longer prompt of words", "x"], max_new_tokens=15, do_sample=True, seed=3,
                 num_return_sequences=2),
    TextSampling(prompt="def", max_new_tokens=25, do_sample=True, seed=9, temperature=0.7, top_p=0.9),
    TextSampling(prompt="import os and", max_new_tokens=6, repetition_penalty=1.3, stop=["\n"]),
]  # fmt: skip


@pytest.mark.parametrize("graph", ["gpt", "portable", "lstm"])
def test_requests_that_join_a_batch_mid_decode_get_the_tokens_they_get_alone(
    text_exports: dict[str, Path], portable_gpt: Path, graph: str
) -> None:
    """Continuous batching: requests join a running batch between steps (prompts of other lengths, other settings)
    and leave when they finish; each gets exactly its tokens alone. Rows are computed by the same kernels either
    way (the in-place cache keeps each row's own length; the portable one pads the shorter cache on the left), so
    the test allows no flip."""
    model = genloom.load(portable_gpt if graph == "portable" else text_exports[graph], providers="cpu")
    alone = [textgen.generate(model, request).tokens for request in JOINING]
    batch = textgen.DecodingBatch(model)
    joined = [batch.join(JOINING[0])]
    for request, steps_before in zip(JOINING[1:], (2, 1, 4), strict=True):
        for _ in range(steps_before):
            batch.step()
        joined.append(batch.join(request))
    largest = len(batch.rows)
    while batch.rows:
        batch.step()
    assert [[s.generated for s in sequences] for sequences in joined] == alone
    assert largest >= 4 and batch.session is None  # they decoded together, and every row has left
