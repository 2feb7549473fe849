"""Batched text generation gives every sequence exactly the tokens it gets alone: torch and ONNX, GPT and LSTM.

Each row has its own budget, ``min(max_new_tokens, context_length - len(its prompt))``;
rows that finish early (end of text, a stop string, their budget) leave the batch, and
the cache columns that are padding for every row left go with them, so a short prompt
batched with a long one is not cut off at the context.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genloom
from genloom.plugins import get_registry

CONTEXT = 32
TINY_TEXT = {
    "layers": 1,
    "width": 32,
    "context_length": CONTEXT,
    "tokenizer": "char",
    "batch_size": 16,
    "eval_every": 0,
    "checkpoint_every": 0,
    "warmup_steps": 5,
    "learning_rate": 1e-2,
}
STOPS = [None, ["e"], [" t", "."], ["\n"]]
BACKENDS = ["gpt-torch", "gpt-onnx", "lstm-torch", "lstm-onnx"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Operators this small gain nothing from a second thread; on a busy machine it costs tenfold."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Backends:
    """Each backend's loaded model, and the text the prompts are cut from (kept out of hypothesis's reports)."""

    models: dict[str, Any] = field(repr=False)
    corpus: str = field(repr=False)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Backends:
    """A tiny char-level GPT and LSTM, trained once on Python's documentation with one sentence per paragraph
    (so they learn to end text often), each loaded as a torch model and as its ONNX export."""
    root = tmp_path_factory.mktemp("batching")
    sentences = (
        re.sub(r"\.\s+", ".\n\n", get_registry().open_data("pydoc").text[:20_000]).encode("ascii", "ignore").decode()
    )
    corpus = root / "sentences.txt"
    corpus.write_text(sentences, encoding="utf-8")
    exporter = get_registry().exporter("onnx").value
    models = {}
    for name, extra in (("gpt", {"heads": 2}), ("lstm", {})):
        genloom.train(name, f"text:{corpus}", root / name, progress=False, steps=80, **TINY_TEXT, **extra)
        exporter.export(root / name, root / f"{name}-onnx")
        models[f"{name}-torch"] = genloom.load(root / name)
        models[f"{name}-onnx"] = genloom.load(root / f"{name}-onnx", providers="cpu")
    return Backends(models, sentences)


def test_a_short_prompt_gets_its_own_budget_beside_a_long_one(backends: Backends) -> None:
    long_prompt = backends.corpus[:20]  # 21 tokens with <|endoftext|>: 11 left of the context of 32
    knobs = {"max_new_tokens": 25, "min_new_tokens": 25}
    for backend in ("gpt-torch", "gpt-onnx"):
        model = backends.models[backend]
        alone = model.generate(prompt="The", **knobs).tokens[0]
        batched = model.generate(prompt=["The", long_prompt], **knobs).tokens
        assert len(alone) == 25 and batched[0] == alone, backend
        assert len(batched[1]) == CONTEXT - 21, backend


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Sampling settings with 1-4 prompts of 0..30 characters (to the context's edge), as offsets into the corpus."""
    prompts = draw(st.lists(st.tuples(st.integers(0, 15_000), st.integers(0, CONTEXT - 2)), min_size=1, max_size=4))
    knobs: dict[str, Any] = {
        "prompt_slices": prompts,
        "max_new_tokens": draw(st.integers(1, 40)),
        "num_return_sequences": draw(st.integers(1, 3)),
        "stop": draw(st.sampled_from(STOPS)),
    }
    if draw(st.booleans()):
        knobs.update(
            do_sample=True, seed=draw(st.integers(0, 2**16)), temperature=draw(st.sampled_from([0.7, 1.0, 1.5]))
        )
    else:
        knobs.update(repetition_penalty=draw(st.sampled_from([1.0, 1.3])))
    return knobs


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50, deadline=None)
@given(drawn=requests())
def test_batched_generation_gives_each_sequence_the_tokens_it_gets_alone(
    backends: Backends, backend: str, drawn: dict[str, Any]
) -> None:
    model = backends.models[backend]
    knobs = dict(drawn)
    prompts = [backends.corpus[start : start + length] for start, length in knobs.pop("prompt_slices")]
    batched = model.generate(prompt=prompts, **knobs)
    alone = [model.generate(prompt=prompt, **knobs) for prompt in prompts]
    assert batched.tokens == [tokens for result in alone for tokens in result.tokens]
    assert batched.texts == [text for result in alone for text in result.texts]
