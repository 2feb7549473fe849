"""The text plugin: GPT with KV cache, LSTM, tokenizer, Hugging Face sampling knobs, streaming, training recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genloom
from genloom.errors import ConfigError
from genloom.plugins import get_registry
from genloom.testing import check_generator
from genloom.tokenizer import Tokenizer
from genloom_text import GPTGenerator, LSTMGenerator
from genloom_text.sessions import RecomputingSession
from tests.conftest import assert_one_line_error, run_cli

TINY = {
    "width": 32,
    "layers": 2,
    "context_length": 32,
    "batch_size": 8,
    "vocab_size": 300,
    "eval_every": 0,
    "warmup_steps": 5,
}
PROMPTS = ["The", "Return the value of the", "A list"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """About 40,000 characters of Python's documentation, as a text file data source."""
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text(get_registry().open_data("pydoc").text[:40_000], encoding="utf-8")
    return f"text:{path}"


@pytest.fixture(scope="module")
def models(corpus: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    for name in ("gpt", "lstm"):
        genloom.train(name, corpus, root / name, progress=False, steps=60, log_every=1, **TINY)
    return {name: root / name for name in ("gpt", "lstm")}


@pytest.mark.parametrize("generator_cls", [GPTGenerator, LSTMGenerator])
def test_both_text_generators_conform(tmp_path: Path, corpus: str, generator_cls: type[genloom.Generator]) -> None:
    sampled = {"prompt": ["", "a"], "max_new_tokens": 6, "do_sample": True, "num_return_sequences": 2, "seed": 7}
    check_generator(generator_cls, data=corpus, workdir=tmp_path, settings=sampled, **TINY)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_cached_decoding_gives_the_tokens_and_logits_of_recomputing(models: dict[str, Path], name: str) -> None:
    generator = genloom.load(models[name]).generator
    prompt = [generator.tokenizer.end_of_text, *generator.tokenizer.encode("The value of")]
    with torch.no_grad():
        generator.network.eval()
        runs = {}
        for kind, session in (("cached", generator.session()), ("recomputed", RecomputingSession(generator.network))):
            logits, tokens, all_logits = session.start(np.array([prompt]), np.ones((1, len(prompt)), np.int64)), [], []
            for _ in range(20):
                all_logits.append(logits[0])
                tokens.append(int(logits[0].argmax()))
                logits = session.advance(np.array([tokens[-1]]))
            runs[kind] = tokens, np.stack(all_logits)
    (tokens, logits), (expected_tokens, expected_logits) = runs["cached"], runs["recomputed"]
    np.testing.assert_allclose(logits, expected_logits, atol=1e-5, rtol=0)
    assert tokens == expected_tokens


@pytest.mark.parametrize("name", ["gpt", "lstm"])
@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "top_p": 0.9, "temperature": 0.8, "seed": 5}])
def test_a_batch_of_prompts_gets_the_tokens_each_gets_alone(models: dict[str, Path], name: str, sampling: dict) -> None:
    model = genloom.load(models[name])
    batch = model.generate(prompt=PROMPTS, max_new_tokens=12, **sampling)
    alone = [model.generate(prompt=p, max_new_tokens=12, **sampling) for p in PROMPTS]
    assert batch.tokens == [a.tokens[0] for a in alone]
    assert batch.texts == [a.text for a in alone]


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_any_text_round_trips_through_both_tokenizers(text: str) -> None:
    for tokenizer in round_trip_tokenizers():
        assert tokenizer.decode(tokenizer.encode(text)) == text


def round_trip_tokenizers(cache: dict = {}) -> list[Tokenizer]:  # noqa: B006 - built once, shared by hypothesis examples
    if not cache:
        corpus = "hello wörld, ünïcode 日本語 text\n\n" * 50 + "def f(x):\n    return x\t# tab\n" * 50
        cache["all"] = [Tokenizer.train(corpus, "bpe", 400), Tokenizer.train(corpus, "char", 400)]
    return cache["all"]


def test_the_char_tokenizer_has_one_token_per_byte(models: dict[str, Path]) -> None:
    tokenizer = Tokenizer.train("abc", "char", 1024)
    assert tokenizer.vocab_size == 257 and len(tokenizer.encode("héllo")) == 6


def test_sampling_knobs_behave_as_in_hugging_face(models: dict[str, Path]) -> None:
    model = genloom.load(models["gpt"])
    greedy = model.generate(prompt="The", max_new_tokens=15)
    assert model.generate(prompt="The", max_new_tokens=15, do_sample=True, top_k=1, seed=3).tokens == greedy.tokens
    one = model.generate(prompt="The", max_new_tokens=15, do_sample=True, seed=3)
    assert one.texts == model.generate(prompt="The", max_new_tokens=15, do_sample=True, seed=3).texts
    several = model.generate(prompt="The", max_new_tokens=15, do_sample=True, seed=3, num_return_sequences=3)
    assert len(several.texts) == 3 and several.texts[0] == one.text and len(set(several.texts)) > 1
    penalised = model.generate(prompt="The", max_new_tokens=15, repetition_penalty=5.0)
    assert penalised.tokens != greedy.tokens and len(set(penalised.tokens[0])) >= len(set(greedy.tokens[0]))
    assert all(len(t) <= 15 for t in greedy.tokens)


def test_stop_strings_end_a_sequence_before_them(models: dict[str, Path]) -> None:
    model = genloom.load(models["gpt"])
    full = model.generate(prompt="The", max_new_tokens=30, repetition_penalty=1.3).text
    assert len(full) >= 10, full
    stop = full[len(full) // 2 : len(full) // 2 + 2]  # two characters that the greedy text does produce
    cut = model.generate(prompt="The", max_new_tokens=30, repetition_penalty=1.3, stop=[stop]).text
    assert stop not in cut and full.startswith(cut) and len(cut) < len(full)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"do_sample": True, "temperature": 0}, "temperature must be > 0 when do_sample=True"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        (
            {"prompt": "word " * 100},
            r"prompt: \d+ tokens, but the model's context holds 32 \(prompt plus generated tokens\)",
        ),
        ({"max_new_tokens": 0}, "field 'max_new_tokens'"),
        ({"n": 3}, "unknown field 'n'"),
        ({"do_sample": True, "temperature": float("nan")}, "field 'temperature': Input should be a finite number"),
        ({"temperature": float("inf")}, "field 'temperature': Input should be a finite number"),
        ({"repetition_penalty": float("inf")}, "field 'repetition_penalty': Input should be a finite number"),
        ({"prompt": "caf\udce9"}, r"prompt: not valid UTF-8 text \(byte 0xe9 at character 3\); give UTF-8 text"),
        (
            {"prompt": ["ok", "\ud800"]},
            r"prompt 2: not valid UTF-8 text \('\\ud800', a lone surrogate, at character 0\)",
        ),
        ({"stop": ["\udcff"]}, "stop: not valid UTF-8 text"),
    ],
)
def test_invalid_knobs_are_clear_errors(models: dict[str, Path], knobs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        genloom.load(models["gpt"]).generate(**{"prompt": "The", **knobs})


def test_streaming_yields_the_text_generate_returns(models: dict[str, Path]) -> None:
    model = genloom.load(models["gpt"])
    knobs = {"prompt": "The", "max_new_tokens": 25, "do_sample": True, "seed": 11}
    pieces = list(model.stream(**knobs))
    assert len(pieces) > 3 and "".join(pieces) == model.generate(**knobs).text
    with pytest.raises(ConfigError, match="stream: give one prompt"):
        list(model.stream(prompt=["a", "b"]))


def test_the_cli_generates_and_streams_text(models: dict[str, Path]) -> None:
    args = ["generate", str(models["lstm"]), "--prompt", "The", "--max-new-tokens", "20", "--do-sample", "--seed", "2"]
    printed, streamed = run_cli(*args), run_cli(*args, "--stream")
    assert printed.returncode == 0 and streamed.returncode == 0, printed.stderr + streamed.stderr
    expected = genloom.load(models["lstm"]).generate(prompt="The", max_new_tokens=20, do_sample=True, seed=2).text
    assert printed.stdout == expected + "\n" == streamed.stdout
    assert_one_line_error(
        run_cli("generate", str(models["lstm"]), "--prompt", "x", "--top-p", "2"), "top_p must be in (0, 1]"
    )
    assert_one_line_error(
        run_cli("generate", str(models["lstm"]), "--labels", "1"),
        "--labels: this model makes text; its settings are prompt,",
    )


@pytest.mark.timeout(300)
def test_the_cli_refuses_prompts_that_are_not_utf8_and_temperatures_that_are_not_finite(
    models: dict[str, Path],
) -> None:
    # Latin-1 bytes on the command line, as a shell passes $'caf\xe9': Python turns 0xe9 into U+DCE9.
    command = [sys.executable, "-m", "genloom", "generate", str(models["gpt"]), "--prompt", b"caf\xe9"]
    not_utf8 = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert_one_line_error(not_utf8, "prompt: not valid UTF-8 text (byte 0xe9 at character 3); give UTF-8 text")
    for value in ("nan", "inf"):
        result = run_cli("generate", str(models["gpt"]), "--prompt", "The", "--do-sample", "--temperature", value)
        assert_one_line_error(result, "field 'temperature': Input should be a finite number", f"(got {value})")


def test_training_logs_validation_loss_perplexity_and_bits_per_byte(models: dict[str, Path]) -> None:
    rows = [json.loads(line) for line in (models["gpt"] / "metrics.jsonl").read_text().splitlines()]
    final = rows[-1]
    assert final["eval/perplexity"] == pytest.approx(np.exp(final["eval/val_loss"]), rel=1e-5)
    assert 0 < final["eval/bits_per_byte"] < 8
    learning_rates = [row["lr"] for row in rows if "lr" in row]
    assert learning_rates[:5] == pytest.approx([2e-3 * step / 5 for step in range(1, 6)])  # linear warm-up over 5 steps
    assert learning_rates[-1] == pytest.approx(2e-4, rel=0.05)  # then cosine decay to min_learning_rate
    assert (models["gpt"] / "samples" / "samples-000060.txt").read_text().strip()


def test_early_stopping_ends_training_when_validation_loss_stalls(corpus: str, tmp_path: Path) -> None:
    # A learning rate too small to change any float32 weight: validation loss stays exactly the same.
    knobs = {
        **TINY,
        "eval_every": 2,
        "warmup_steps": 0,
        "early_stopping_patience": 2,
        "learning_rate": 1e-12,
        "min_learning_rate": 1e-12,
    }
    manifest = genloom.train("gpt", corpus, tmp_path, progress=False, steps=50, **knobs)
    assert manifest.training.steps == 6  # evaluations at 2, 4, 6: no improvement after the first two


def test_eval_reports_bits_per_byte_beside_a_character_bigram(models: dict[str, Path], corpus: str) -> None:
    from genloom.evaluation import evaluate_model

    report = evaluate_model(models["gpt"], corpus)
    assert set(report.held_out) == {"val_loss", "perplexity", "bits_per_byte"}
    assert 1.0 < report.baselines["char_bigram_bits_per_byte"] < 8.0


def test_a_hugging_face_gpt2_checkpoint_loads_and_matches_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    checkpoint = tmp_path / "tiny-gpt2"
    backend = Tokenizer.train("hello world, a tiny corpus for a tiny model. " * 20, "bpe", 300).backend
    tokenizer = transformers.GPT2TokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=backend.get_vocab_size(),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    reference = transformers.GPT2LMHeadModel(config).eval()
    reference.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)

    from genloom_text import load_gpt2

    generator = load_gpt2(checkpoint)
    generator.network.eval()
    tokens = torch.randint(1, config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = generator.network(tokens)
        theirs = reference(tokens).logits
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4, rtol=0)

    genloom.save(generator, tmp_path / "genloom-gpt2")
    model = genloom.load(tmp_path / "genloom-gpt2")
    prompt = "hello world"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reference.generate(ids, max_new_tokens=15, do_sample=False, pad_token_id=0)
    new_tokens = expected[0, ids.shape[1] :].tolist()
    if new_tokens[-1] == tokenizer.eos_token_id:  # transformers keeps the end-of-text token; genloom stops before it
        new_tokens.pop()
    assert model.generate(prompt=prompt, max_new_tokens=15).tokens[0] == new_tokens and new_tokens

    corpus = tmp_path / "more.txt"  # the imported model fine-tunes like any genloom model, on its own tokenizer
    corpus.write_text("hello tiny world, a corpus of its own. " * 40, encoding="utf-8")
    tuned = genloom.train(
        "gpt", f"text:{corpus}", tmp_path / "tuned", init_from=tmp_path / "genloom-gpt2", progress=False, steps=2,
        batch_size=2, eval_every=0,
    )  # fmt: skip
    assert tuned.training is not None and tuned.training.base is not None and tuned.training.base.data is None
    assert (tmp_path / "tuned" / "tokenizer.json").read_bytes() == (
        tmp_path / "genloom-gpt2" / "tokenizer.json"
    ).read_bytes()


def test_the_cache_benchmark_runs_and_reports_both_ways(models: dict[str, Path]) -> None:
    script = Path(__file__).parents[1] / "benchmarks" / "text_cache.py"
    result = subprocess.run(
        [sys.executable, str(script), str(models["gpt"]), "--tokens", "8", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpt (") and "(8 tokens per run, median of 1)" in lines[1]
    assert lines[1].split()[:2] == ["with", "cache"] and lines[2].split()[0] == "recomputing"
