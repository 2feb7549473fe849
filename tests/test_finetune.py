"""Fine-tuning (`genloom train NAME --init-from BASE`): the run starts from the base's weights and shape (a text
model from its tokenizer too), names the base in its manifest, resumes like any run, and refuses bad bases in one
line before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.artifacts import artifact_id
from genloom.plugins import get_registry
from tests.conftest import assert_one_line_error, cli_in_process

TINY_GPT = {
    "width": 32,
    "layers": 1,
    "heads": 2,
    "context_length": 32,
    "batch_size": 4,
    "vocab_size": 300,
    "eval_every": 0,
    "warmup_steps": 0,
}
TINY_CGAN = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}


def ok(*args: str) -> str:
    result = cli_in_process(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def settings(values: dict[str, object]) -> list[str]:
    return [part for key, value in values.items() for part in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny GPT trained on one slice of Python's docs (and its export), a second slice to fine-tune on, and
    digits 0-4 and 5-9 as two image sets with a cgan trained on the first."""
    root = tmp_path_factory.mktemp("fine-tune")
    text = get_registry().open_data("pydoc").text
    (root / "first.txt").write_text(text[:20_000], encoding="utf-8")
    (root / "second.txt").write_text(text[40_000:60_000], encoding="utf-8")
    genloom.train("gpt", f"text:{root / 'first.txt'}", root / "gpt", progress=False, steps=5, **TINY_GPT)
    ok("export", str(root / "gpt"), "--out", str(root / "gpt-onnx"))
    digits = get_registry().open_data("digits")
    for name, keep in (("low", digits.labels < 5), ("high", digits.labels >= 5)):
        np.savez(root / f"{name}.npz", images=digits.images[keep][:, 0], labels=digits.labels[keep] % 5)
    np.savez(root / "all.npz", images=digits.images[:, 0], labels=digits.labels)
    genloom.train("cgan", f"npz:{root / 'low.npz'}", root / "cgan", progress=False, steps=3, **TINY_CGAN)
    return {"root": root, "gpt": root / "gpt", "export": root / "gpt-onnx", "cgan": root / "cgan"}


def test_a_fine_tune_starts_from_the_bases_weights_and_tokenizer_and_names_it(bases: dict[str, Path]) -> None:
    tuned = bases["root"] / "tuned"
    data = f"text:{bases['root'] / 'second.txt'}"
    frozen_step = {"learning_rate": 1e-12, "min_learning_rate": 0.0, "weight_decay": 0.0}
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--init-from", str(bases["gpt"]), "--steps", "1",
       "--quiet", *settings({"eval_every": 0, **frozen_step}))  # fmt: skip
    base_weights = genloom.load(bases["gpt"]).generator.modules["model"].state_dict()
    tuned_weights = genloom.load(tuned).generator.modules["model"].state_dict()
    assert max(float((base_weights[k] - tuned_weights[k]).abs().max()) for k in base_weights) < 1e-6
    assert (tuned / "tokenizer.json").read_bytes() == (bases["gpt"] / "tokenizer.json").read_bytes()
    manifest = json.loads((tuned / "manifest.json").read_text())
    assert manifest["training"]["base"] == {
        "path": str(bases["gpt"]),
        "generator": "gpt",
        "artifact_sha256": artifact_id(bases["gpt"]),
        "data": f"text:{bases['root'] / 'first.txt'}",
        "base": None,
    }
    assert manifest["config"]["width"] == 32 and manifest["config"]["batch_size"] == 16  # shape: base's; knobs: user's


def test_a_fine_tune_trains_and_resumes_with_resume_alone_keeping_its_base(bases: dict[str, Path]) -> None:
    tuned = bases["root"] / "resumed"
    data = f"text:{bases['root'] / 'second.txt'}"
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--init-from", str(bases["gpt"]), "--steps", "2", "--quiet")
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--resume", "--steps", "4", "--quiet")
    training = json.loads((tuned / "manifest.json").read_text())["training"]
    assert training["steps"] == 4 and training["resumed"] == 1
    assert training["base"]["artifact_sha256"] == artifact_id(bases["gpt"])
    assert genloom.load(tuned).generate(prompt="The", max_new_tokens=4, seed=1).texts


def test_a_cgan_fine_tunes_on_other_classes_of_the_same_size(bases: dict[str, Path]) -> None:
    tuned = bases["root"] / "cgan-high"
    high = f"npz:{bases['root'] / 'high.npz'}"
    ok("train", "cgan", "--data", high, "--out", str(tuned), "--init-from", str(bases["cgan"]), "--steps", "2",
       "--quiet", *settings({"batch_size": 16, "sample_every": 0}))  # fmt: skip
    images = genloom.load(tuned).generate(n=5, labels=[0, 1, 2, 3, 4], seed=2)
    assert images.array.shape == (5, 8, 8, 1)
    refused = cli_in_process("train", "cgan", "--data", f"npz:{bases['root'] / 'all.npz'}", "--out",
                             str(bases["root"] / "ten"), "--init-from", str(bases["cgan"]))  # fmt: skip
    assert_one_line_error(refused, "in the base, but this data makes it", "fine-tune on data of the base's shape")
    assert not (bases["root"] / "ten").exists()


def corrupted_copy(base: Path, where: Path) -> Path:
    shutil.copytree(base, where)
    weights = bytearray((where / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (where / "model.safetensors").write_bytes(bytes(weights))
    return where


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("other generator", ("the base is a 'gpt' model, not 'lstm'",)),
        ("corrupted", ("is corrupted", "sha256")),
        ("shape", ("--set width=64", "has width=32", "fixes the model's shape")),
        ("bad knob", ("field 'learning_rate'",)),
        ("export", ("is an ONNX export", "give the trained model it was exported from")),
        ("with resume", ("--init-from with --resume", "drop --init-from")),
    ],
)
def test_bad_bases_are_one_line_and_nothing_is_written(
    bases: dict[str, Path], tmp_path: Path, case: str, fragments: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    name, base, more = "gpt", bases["gpt"], []
    if case == "other generator":
        name = "lstm"
    elif case == "corrupted":
        base = corrupted_copy(bases["gpt"], tmp_path / "damaged")
    elif case == "shape":
        more = ["--set", "width=64"]
    elif case == "bad knob":
        more = ["--set", "learning_rate=-1"]
    elif case == "export":
        base = bases["export"]
    else:
        more = ["--resume"]
    data = f"text:{bases['root'] / 'second.txt'}"
    refused = cli_in_process("train", name, "--data", data, "--out", str(out), "--init-from", str(base), *more)
    assert_one_line_error(refused, *fragments)
    assert not out.exists()


def test_lora_trains_only_its_adapters_ships_them_alone_and_exports_merged(bases: dict[str, Path]) -> None:
    import torch

    from genloom_text.lora import apply_adapter

    tuned, exported = bases["root"] / "lora", bases["root"] / "lora-onnx"
    data = f"text:{bases['root'] / 'second.txt'}"
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--init-from", str(bases["gpt"]), "--steps", "3",
       "--quiet", *settings({"lora_rank": 2, "learning_rate": 0.05, "eval_every": 0}))  # fmt: skip
    base, model = genloom.load(bases["gpt"]).generator.modules["model"], genloom.load(tuned).generator.modules["model"]
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_" in name for name in trainable)
    assert len(trainable) == 2 * 2 * TINY_GPT["layers"]  # A and B of c_attn and c_proj in each block
    tuned_state = model.state_dict()
    assert all(torch.equal(tensor, tuned_state[name]) for name, tensor in base.state_dict().items())  # W untouched
    assert any(float(tuned_state[name].abs().max()) > 0 for name in trainable if name.endswith("lora_B"))  # it learnt
    adapter = tuned / "adapter.safetensors"
    assert adapter.stat().st_size < (tuned / "model.safetensors").stat().st_size / 5
    tokens = torch.randint(0, 300, (2, 16))
    rebuilt = genloom.load(bases["gpt"]).generator.modules["model"]
    apply_adapter(rebuilt, adapter)  # the adapter alone on top of the base computes what the fine-tune computes
    with torch.no_grad():
        assert float((rebuilt(tokens)[0] - model(tokens)[0]).abs().max()) < 1e-5
    ok("export", str(tuned), "--out", str(exported))  # the parity gate and end-to-end check on the merged graph
    settings_ = {"prompt": "The", "max_new_tokens": 8, "seed": 3}
    assert genloom.load(exported).generate(**settings_).texts == genloom.load(tuned).generate(**settings_).texts


def test_freezing_keeps_the_embeddings_and_all_but_the_last_blocks(bases: dict[str, Path]) -> None:
    import torch

    tuned = bases["root"] / "frozen"
    data = f"text:{bases['root'] / 'second.txt'}"
    frozen = {"freeze_embeddings": True, "train_last_blocks": 0, "learning_rate": 0.05, "eval_every": 0}
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--init-from", str(bases["gpt"]), "--steps", "2",
       "--quiet", *settings(frozen))  # fmt: skip
    base = genloom.load(bases["gpt"]).generator.modules["model"].state_dict()
    after = genloom.load(tuned).generator.modules["model"].state_dict()
    changed = {name for name in base if not torch.equal(base[name], after[name])}
    assert changed == {"ln_f.weight", "ln_f.bias"}, changed


def test_freezed_keeps_the_discriminators_first_convolutions(bases: dict[str, Path]) -> None:
    import torch

    tuned = bases["root"] / "cgan-freezed"
    ok("train", "cgan", "--data", f"npz:{bases['root'] / 'high.npz'}", "--out", str(tuned), "--init-from",
       str(bases["cgan"]), "--steps", "2", "--quiet",
       *settings({"batch_size": 16, "sample_every": 0, "freeze_discriminator_layers": 1}))  # fmt: skip
    base = genloom.load(bases["cgan"]).generator.modules["discriminator"].state_dict()
    after = genloom.load(tuned).generator.modules["discriminator"].state_dict()
    changed = {name for name in base if name.endswith("original") and not torch.equal(base[name], after[name])}
    assert changed and not any(name.startswith("features.0.") for name in changed), changed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_fine_tune_trains_in_two_processes_like_any_run(bases: dict[str, Path]) -> None:
    tuned = bases["root"] / "two-processes"
    data = f"text:{bases['root'] / 'second.txt'}"
    ok("train", "gpt", "--data", data, "--out", str(tuned), "--init-from", str(bases["gpt"]), "--steps", "2",
       "--quiet", "--nproc", "2", *settings({"eval_every": 0, "batch_size": 4}))  # fmt: skip
    training = json.loads((tuned / "manifest.json").read_text())["training"]
    assert training["world_size"] == 2 and training["base"]["artifact_sha256"] == artifact_id(bases["gpt"])
    assert (tuned / "tokenizer.json").read_bytes() == (bases["gpt"] / "tokenizer.json").read_bytes()
