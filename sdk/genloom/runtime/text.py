"""Text exports run with ONNX Runtime through the same decoding loop (``genloom.textgen``) as the torch models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.results import TextResult
from genloom.runtime.base import OnnxModel
from genloom.runtime.providers import CUDA, Providers
from genloom.sampling import TextSampling
from genloom.textgen import generate, stream
from genloom.tokenizer import Tokenizer, evenly_spaced_windows

ONE_THREAD_BELOW_BYTES = 32 * 2**20
"""A text graph smaller than this (fp32 file) decodes on one CPU thread: its operators are too small to gain
from a second thread, and waking one costs more. Measured on 2 cores: the demo GPT's 4 MB graph decoded 28%
more tokens/s at batch 1 and 50% more at batch 8 on one thread; GPT-2 small's 650 MB graph 5-18% fewer."""


class OnnxTextModel(OnnxModel):
    """An exported text generator (drivers ``text-decoder`` and ``text-recurrent``); one session, shared by all threads."""

    def __init__(self, directory: Path, manifest: Manifest, providers: Providers = "auto", session_options: Any = None,
                 precision: str = "fp32") -> None:
        super().__init__(directory, manifest)
        self.options: dict[str, Any] = self.export["driver_options"]
        self.driver: str = self.export["driver"]
        graph = self.export["graphs"][0]
        small = (directory / graph["file"]).stat().st_size < ONE_THREAD_BELOW_BYTES
        self.onnx = self.open_graph(graph["name"], providers, session_options, precision, cpu_threads=1 if small else 0)
        self.tokenizer = Tokenizer.from_json((directory / self.options["tokenizer"]).read_bytes())
        self.context_length: int | None = self.options.get("context_length")
        self.prepend_end_of_text: bool = bool(self.options.get("prepend_end_of_text", True))
        self.cache_names = [i.name for i in self.onnx.get_inputs()][2:] if self.driver == "text-decoder" else []
        self.output_names = [o.name for o in self.onnx.get_outputs()]

    def session(self) -> DecoderRun | RecurrentRun:
        """A decoding session for :mod:`genloom.textgen`."""
        return DecoderRun(self) if self.driver == "text-decoder" else RecurrentRun(self)

    def generate(self, **settings: Any) -> TextResult:
        """The same call as the torch path: ``generate(prompt="The", max_new_tokens=40, do_sample=True, seed=0)``."""
        request = validate_model(TextSampling, settings, what="sampling settings")
        decoded = generate(self, request)
        return TextResult(decoded.texts, decoded.tokens, self._provenance(request.seed, request.model_dump()))

    def stream(self, **settings: Any) -> Iterator[str]:
        """Yield the new text piece by piece (one prompt)."""
        yield from stream(self, validate_model(TextSampling, settings, what="sampling settings"))

    def perplexity(self, text: str, windows: int = 64) -> float:
        """exp(mean next-token loss) over up to ``windows`` evenly spaced windows of ``text``, a context long each.

        Paragraphs (split at blank lines) start with ``<|endoftext|>`` when the model
        was trained that way, as in training.
        """
        tokens = self.tokenizer.encode_documents(text, self.prepend_end_of_text)
        length = min(self.context_length or 128, len(tokens) - 1)
        batch = evenly_spaced_windows(tokens, length, windows)
        logits = self.session().start(batch[:, :-1], np.ones((len(batch), length), np.int64), every_position=True)
        logits = logits - logits.max(axis=-1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        chosen = np.take_along_axis(log_probabilities, batch[:, 1:, None], axis=-1)
        return float(np.exp(-chosen.mean()))

    def _calls(self) -> list[str]:
        return ["generate", "stream", "perplexity"]


class DecoderRun:
    """The KV cache as past/present tensors: the prompt with zero-length past, then one position per run.

    On CUDA it runs through IO binding: the present tensors stay on the GPU and go
    back in as the next step's past without a copy; only the logits come to the
    host. On the CPU, where there is no copy to save, a plain ``run`` with numpy
    arrays does the same with a third of the per-step Python calls.
    """

    def __init__(self, model: OnnxTextModel) -> None:
        self.model = model
        self.on_gpu = model.provider == CUDA
        self.cache: list[Any] = []  # numpy arrays, or onnxruntime.OrtValues on the GPU
        self.mask = np.zeros((0, 0), np.int64)

    def start(self, tokens: np.ndarray, mask: np.ndarray, every_position: bool = False) -> np.ndarray:
        """Run the prompts with zero-length past; the last position's logits (all of them with ``every_position``)."""
        options = self.model.options
        empty = np.zeros((len(tokens), options["heads"], 0, options["head_dim"]), np.float32)
        self.cache = [empty] * len(self.model.cache_names)
        if self.on_gpu:
            from onnxruntime import OrtValue

            self.cache = [OrtValue.ortvalue_from_numpy(empty, "cuda", 0) for _ in self.model.cache_names]
        self.mask = mask.astype(np.int64)
        logits = self._run(tokens)
        return logits if every_position else logits[:, -1]

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        self.mask = np.concatenate([self.mask, np.ones((len(tokens), 1), np.int64)], axis=1)
        return self._run(tokens[:, None])[:, -1]

    def _run(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if not self.on_gpu:
            feeds = {"input_ids": tokens, "attention_mask": self.mask, **dict(zip(self.model.cache_names, self.cache))}
            logits, *self.cache = self.model.onnx.run(None, feeds)
            return logits
        binding = self.model.onnx.io_binding()
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_cpu_input("attention_mask", self.mask)
        for name, value in zip(self.model.cache_names, self.cache):
            binding.bind_ortvalue_input(name, value)
        logits_name, *present_names = self.model.output_names
        binding.bind_output(logits_name, "cpu")
        for name in present_names:
            binding.bind_output(name, "cuda")
        self.model.onnx.run_with_iobinding(binding)
        logits, *self.cache = binding.get_outputs()
        return logits.numpy()


class RecurrentRun:
    """The LSTM state as tensors; padded prompt positions leave it as it was."""

    def __init__(self, model: OnnxTextModel) -> None:
        self.model = model
        self.state: list[np.ndarray] = []

    def start(self, tokens: np.ndarray, mask: np.ndarray, every_position: bool = False) -> np.ndarray:
        """Run the prompts from a zero state; the last position's logits (all of them with ``every_position``)."""
        options = self.model.options
        self.state = [np.zeros((options["layers"], len(tokens), options["width"]), np.float32) for _ in range(2)]
        if mask.all():
            logits = self._run(tokens)
            return logits if every_position else logits[:, -1]
        logits = np.empty(0)
        for position in range(tokens.shape[1]):
            before = self.state
            logits = self._run(tokens[:, position : position + 1])
            keep = mask[:, position].astype(bool)[None, :, None]
            self.state = [np.where(keep, new, old) for new, old in zip(self.state, before)]
        return logits[:, -1]

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        return self._run(tokens[:, None])[:, -1]

    def _run(self, tokens: np.ndarray) -> np.ndarray:
        logits, *self.state = self.model.onnx.run(None, {"input_ids": tokens.astype(np.int64), "state.h": self.state[0], "state.c": self.state[1]})
        return logits
