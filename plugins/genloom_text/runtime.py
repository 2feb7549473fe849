"""The text plugin's runtime drivers: its exports run with ONNX Runtime through the same decoding loop
(``genloom.textgen``) as the torch models. Imports no torch: this is what a runtime-only install runs.

``text-decoder`` (the GPT): inputs ``input_ids`` ``(B, T)`` int64, ``attention_mask`` int64, then one
``past_key_values.{i}.key``/``.value`` per layer; outputs ``logits`` ``(B, T, V)`` then one ``present.*`` tensor per
past one. With the ``cache`` option ``in-place`` (the fused graph) past and present are one fixed-capacity buffer
``(B, heads, capacity, head_dim)`` per pair and the mask holds each row's length (``InPlaceDecoderRun``); without it
(the portable graph) the mask is ``(B, past + T)``, the past ``(B, heads, past, head_dim)`` float32, the prompt runs
with zero-length past tensors and positions come from the mask (``DecoderRun``).

``text-recurrent`` (the LSTM): inputs ``input_ids``, ``state.h``, ``state.c`` ``(layers, B, width)``; outputs
``logits`` and the two new states.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.errors import ArtifactError
from genloom.results import TextResult
from genloom.runtime import OnnxModel
from genloom.runtime.providers import CUDA, Providers
from genloom.sampling import TextSampling
from genloom.textgen import generate, stream
from genloom.tokenizer import Tokenizer, evenly_spaced_windows

DECODER_OPTIONS = ("tokenizer", "heads", "head_dim", "layers", "context_length")
IN_PLACE = "in-place"
"""The ``cache`` driver option of a decoder graph whose past and present are one fixed-capacity buffer
(``GroupQueryAttention``'s layout); without it, each step's present is the past extended by the new position."""
RECURRENT_OPTIONS = ("tokenizer", "layers", "width")

ONE_THREAD_BELOW_BYTES = 32 * 2**20
"""A text graph smaller than this (fp32 file and its external data) decodes on one CPU thread: its operators are
too small to gain from a second thread, and waking one costs more. Measured on 2 cores: the demo GPT's 4 MB graph
decoded 28% more tokens/s at batch 1 and 50% more at batch 8 on one thread; GPT-2 small's 650 MB graph 5-18%
fewer."""


class TextDriver:
    """The ``text-decoder`` and ``text-recurrent`` drivers (see the module's docstring for their graphs)."""

    kind = "text"
    outputs = ("logits",)

    def __init__(self, name: str, inputs: tuple[str, ...], options: tuple[str, ...], description: str) -> None:
        self.name, self.inputs, self.options, self.description = name, inputs, options, description

    def open(
        self, directory: Path, manifest: Manifest, providers: Providers, session_options: Any, precision: str
    ) -> OnnxTextModel:
        return OnnxTextModel(directory, manifest, providers, session_options, precision)

    def benchmark_peer(self, model: OnnxTextModel, cuda: bool) -> Any:
        """What a user would run instead, for ``genloom bench``: a Hugging Face GPT-2 of the export's shape decoded with
        ``generate()`` (decoder exports only; None for others). An ImportError without transformers."""
        if self.name != "text-decoder":
            return None
        from genloom_text.peer import transformers_decoder

        options = model.export.driver_options
        return transformers_decoder(
            options["layers"],
            options["heads"],
            options["heads"] * options["head_dim"],
            options["context_length"],
            int(model.manifest.facts["vocab_size"]),
            cuda,
        )


DRIVERS = (
    TextDriver(
        "text-decoder",
        ("input_ids", "attention_mask"),
        DECODER_OPTIONS,
        "decoder-only transformer; KV cache as past/present tensors",
    ),
    TextDriver(
        "text-recurrent",
        ("input_ids", "state.h", "state.c"),
        RECURRENT_OPTIONS,
        "recurrent language model; state tensors in and out",
    ),
)


class OnnxTextModel(OnnxModel):
    """An exported text generator (drivers ``text-decoder`` and ``text-recurrent``); one session, shared by all
    threads."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        providers: Providers = "auto",
        session_options: Any = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(directory, manifest)
        self.options: dict[str, Any] = self.export.driver_options
        self.driver: str = self.export.driver
        self.require_options(list(DECODER_OPTIONS if self.driver == "text-decoder" else RECURRENT_OPTIONS))
        graph = self.export.graphs[0]
        small = self.graph_bytes(graph.file) < ONE_THREAD_BELOW_BYTES
        self.onnx = self.open_graph(graph.name, providers, session_options, precision, cpu_threads=1 if small else 0)
        tokenizer = self.listed_file("tokenizer")
        self.tokenizer = Tokenizer.from_json(tokenizer.read_bytes(), where=str(tokenizer))
        self.context_length: int | None = self.options.get("context_length")
        self.prepend_end_of_text: bool = bool(self.options.get("prepend_end_of_text", True))
        cache_inputs = self.onnx.get_inputs()[2:] if self.driver == "text-decoder" else []
        self.cache_names = [i.name for i in cache_inputs]
        self.output_names = [o.name for o in self.onnx.get_outputs()]
        self.cache_dtype = np.float16 if cache_inputs and cache_inputs[0].type == "tensor(float16)" else np.float32
        self._require_io(graph.name)
        cache = self.options.get("cache")
        if cache not in (None, IN_PLACE):
            raise ArtifactError(
                f"driver option cache: {cache!r} is not a cache layout this genloom runs (only {IN_PLACE!r}); "
                "upgrade genloom or re-export the model"
            )
        if cache == IN_PLACE and self.provider == CUDA and self.cache_dtype == np.float32:
            print(
                "genloom: warning: ONNX Runtime's CUDA GroupQueryAttention runs in half precision only, so this fp32 "
                "graph's attention runs on the CPU; load precision='fp16' (genloom export --fp16) for CUDA",
                file=sys.stderr,
            )

    def _require_io(self, graph: str) -> None:
        """The graph has the inputs and outputs the decoding sessions feed and read, in their order."""
        inputs, outputs = [i.name for i in self.onnx.get_inputs()], self.output_names
        if self.driver == "text-decoder":  # one present tensor out per past tensor in
            needed = (
                "inputs input_ids, attention_mask, then past tensors; "
                "outputs logits, then one present tensor per past one"
            )
            fits = (
                inputs[:2] == ["input_ids", "attention_mask"]
                and outputs[:1] == ["logits"]
                and len(outputs) == len(inputs) - 1
            )
        else:
            needed = "inputs input_ids, state.h, state.c; outputs logits, then the two new states"
            fits = (
                sorted(inputs) == ["input_ids", "state.c", "state.h"]
                and outputs[:1] == ["logits"]
                and len(outputs) == 3
            )
        if not fits:
            raise ArtifactError(
                f"graph '{graph}' has inputs {inputs} and outputs {outputs}, but the '{self.driver}' driver needs "
                f"{needed}; the graph does not belong to this export: re-export the model"
            )

    def session(self) -> DecoderRun | InPlaceDecoderRun | RecurrentRun:
        """A decoding session for :mod:`genloom.textgen`."""
        if self.driver == "text-recurrent":
            return RecurrentRun(self)
        return InPlaceDecoderRun(self) if self.options.get("cache") == IN_PLACE else DecoderRun(self)

    def generate(self, **settings: Any) -> TextResult:
        """The same call as the torch path: ``generate(prompt="The", max_new_tokens=40, do_sample=True, seed=0)``."""
        request = validate_model(TextSampling, settings, what="sampling settings")
        decoded = generate(self, request)
        return TextResult(decoded.texts, decoded.tokens, self.provenance(request.seed, request.model_dump()))

    def stream(self, **settings: Any) -> Iterator[str]:
        """Yield the new text piece by piece (one prompt)."""
        yield from stream(self, validate_model(TextSampling, settings, what="sampling settings"))

    @property
    def streamable(self) -> bool:
        return True

    def evaluate(self, data: Any) -> dict[str, float]:
        """Validation loss (nats per token) and perplexity on held-out text data, through the export."""
        perplexity = self.perplexity(data.text)
        return {"val_loss": math.log(perplexity), "perplexity": perplexity}

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
        return [*super()._calls(), "perplexity"]


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

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows``; drop the first ``columns`` cache positions (padding for every kept row).

        On CUDA the cache goes through the host for this: rare (once per finished
        row, or when the padded batch reaches the context), and one copy each way.
        """
        self.mask = np.ascontiguousarray(self.mask[rows, columns:])
        self.cache = self._device_cache([np.ascontiguousarray(past[rows, :, columns:]) for past in self._host_cache()])

    def _host_cache(self) -> list[np.ndarray]:
        return self.cache if not self.on_gpu else [past.numpy() for past in self.cache]

    def _device_cache(self, cache: list[np.ndarray]) -> list[Any]:
        if not self.on_gpu:
            return cache
        from onnxruntime import OrtValue

        return [OrtValue.ortvalue_from_numpy(np.ascontiguousarray(past), "cuda", 0) for past in cache]

    def absorb(self, other: DecoderRun) -> None:
        """Append ``other``'s sequences after these rows: whichever cache is shorter is left-padded (mask 0) to the
        other's length, so every row stays right-aligned. On CUDA through the host, as ``compact`` does."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = np.concatenate([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)])
        caches = [self._host_cache(), other._host_cache()]
        joined = [
            np.concatenate([_left_pad(mine, width, 2), _left_pad(theirs, width, 2)])
            for mine, theirs in zip(*caches, strict=True)
        ]
        self.cache = self._device_cache(joined)

    def _run(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if not self.on_gpu:
            feeds = {
                "input_ids": tokens,
                "attention_mask": self.mask,
                **dict(zip(self.model.cache_names, self.cache, strict=True)),
            }
            logits, *self.cache = self.model.onnx.run(None, feeds)
            return logits
        binding = self.model.onnx.io_binding()
        binding.bind_cpu_input("input_ids", tokens)
        binding.bind_cpu_input("attention_mask", self.mask)
        for name, value in zip(self.model.cache_names, self.cache, strict=True):
            binding.bind_ortvalue_input(name, value)
        logits_name, *present_names = self.model.output_names
        binding.bind_output(logits_name, "cpu")
        for name in present_names:
            binding.bind_output(name, "cuda")
        self.model.onnx.run_with_iobinding(binding)
        logits, *self.cache = binding.get_outputs()
        return logits.numpy()


class InPlaceDecoderRun:
    """The KV cache as one fixed-capacity buffer per past/present pair, written in place: nothing grows per token.

    The buffers, ``(B, heads, context_length, head_dim)``, are allocated once per
    generation and bound as both the past input and the present output, so
    ``GroupQueryAttention`` writes each step's keys and values into them and copies
    nothing. Every row keeps its own length (prompts are moved to the left of the
    buffer, padded on the right), so rows can finish and leave, or, for a server,
    join, at any step. The step's token ids, mask and logits live in arrays made at
    the start and bound once, until the batch changes.
    """

    def __init__(self, model: OnnxTextModel) -> None:
        self.model = model
        self.device = "cuda" if model.provider == CUDA else "cpu"
        self.lengths = np.zeros(0, np.int64)  # each row's tokens in the cache, the one being fed included
        self.buffers: list[Any] = []  # one per past/present pair: numpy arrays with spare rows, or CUDA OrtValues
        self.binding: Any = None

    def start(self, tokens: np.ndarray, mask: np.ndarray, every_position: bool = False) -> np.ndarray:
        """Run the prompts (left-padded in ``tokens``); the last real position's logits (all with
        ``every_position``, for prompts without padding)."""
        from onnxruntime import OrtValue

        batch, length = tokens.shape
        options = self.model.options
        self.lengths = mask.sum(axis=1).astype(np.int64)
        if every_position and not mask.all():
            raise ValueError("every_position=True takes prompts of one length (no padding)")
        if not self.lengths.all():
            raise ValueError("every prompt needs at least one token (the end-of-text token for an empty one)")
        moved = np.zeros_like(tokens, dtype=np.int64)
        for row, (prompt, used) in enumerate(zip(tokens, self.lengths, strict=True)):
            moved[row, :used] = prompt[length - used :]
        shape = (batch, options["heads"], options["context_length"], options["head_dim"])
        # Attention reads no position at or after a row's length, so the buffers need no zeros (except on the CPU,
        # where np.zeros costs nothing: the pages are mapped as they are first written).
        if self.device == "cpu":
            self.buffers = [np.zeros(shape, self.model.cache_dtype) for _ in self.model.cache_names]
        else:
            self.buffers = [
                OrtValue.ortvalue_from_shape_and_type(shape, self.model.cache_dtype, self.device, 0)
                for _ in self.model.cache_names
            ]
        self._bind()
        right_mask = (np.arange(length)[None, :] < self.lengths[:, None]).astype(np.int64)
        self.binding.bind_cpu_input("input_ids", moved)
        self.binding.bind_cpu_input("attention_mask", right_mask)
        self.model.onnx.run_with_iobinding(self.binding)
        logits = self.binding.get_outputs()[0].numpy()
        self._bind_step(batch)
        return logits if every_position else logits[np.arange(batch), self.lengths - 1]

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        self.step_ids[:, 0] = tokens
        self.step_mask[self.rows, self.lengths] = 1
        self.lengths += 1
        self.model.onnx.run_with_iobinding(self.binding)
        return self.step_logits[:, 0]

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows`` (each keeps its own length, so no columns need dropping). On the CPU the kept
        rows move up in their buffers; on CUDA the buffers go through the host."""
        from onnxruntime import OrtValue

        self.lengths = self.lengths[rows]
        if self.device == "cpu":
            moves = [(slot, row) for slot, row in enumerate(rows.tolist()) if slot != row]  # rows ascend: in order
            for buffer in self.buffers:
                for slot, row in moves:
                    buffer[slot] = buffer[row]
        else:
            self.buffers = [
                OrtValue.ortvalue_from_numpy(np.ascontiguousarray(buffer.numpy()[rows]), self.device, 0)
                for buffer in self.buffers
            ]
        self._bind()
        self._bind_step(len(rows))

    def absorb(self, other: InPlaceDecoderRun) -> None:
        """Append ``other``'s sequences after these rows (each keeps its own length). On the CPU their rows are
        copied into the buffers' spare rows (doubling the buffers when there are too few); on CUDA the buffers are
        joined on the host."""
        from onnxruntime import OrtValue

        rows, joining = len(self.lengths), len(other.lengths)
        self.lengths = np.concatenate([self.lengths, other.lengths])
        if self.device == "cpu":
            for index, (mine, theirs) in enumerate(zip(self.buffers, other.buffers, strict=True)):
                if rows + joining > len(mine):
                    grown = np.zeros((max(2 * len(mine), rows + joining), *mine.shape[1:]), mine.dtype)
                    grown[:rows] = mine[:rows]
                    self.buffers[index] = mine = grown
                mine[rows : rows + joining] = theirs[:joining]
        else:
            self.buffers = [
                OrtValue.ortvalue_from_numpy(np.concatenate([mine.numpy(), theirs.numpy()]), self.device, 0)
                for mine, theirs in zip(self.buffers, other.buffers, strict=True)
            ]
        self._bind()
        self._bind_step(len(self.lengths))

    def _bind(self) -> None:
        """A binding with each buffer as both its past input and its present output; the logits bound first, so
        that they are the first of its outputs."""
        self.binding = self.model.onnx.io_binding()
        self.binding.bind_output("logits", "cpu")
        present_names = self.model.output_names[1:]
        for past, present, buffer in zip(self.model.cache_names, present_names, self.buffers, strict=True):
            if self.device == "cpu":  # the buffer's first rows (spare rows after them)
                shape, dtype, address = (
                    (len(self.lengths), *buffer.shape[1:]),
                    self.model.cache_dtype,
                    buffer.ctypes.data,
                )
                self.binding.bind_input(past, "cpu", 0, dtype, shape, address)
                self.binding.bind_output(present, "cpu", 0, dtype, shape, address)
            else:
                self.binding.bind_ortvalue_input(past, buffer)
                self.binding.bind_ortvalue_output(present, buffer)

    def _bind_step(self, batch: int) -> None:
        """The one-token step's ids, mask and logits arrays, bound once for every step until the batch changes.

        The mask spans the whole buffer, ones up to each row's length: the graph reads
        each row's length from it and, since it is longer than the new tokens, takes
        the step for a continuation. So a step writes one mask entry per row and binds nothing.
        """
        vocab = int(self.model.manifest.facts["vocab_size"])
        self.rows = np.arange(batch)
        self.step_ids = np.zeros((batch, 1), np.int64)
        self.step_logits = np.empty((batch, 1, vocab), np.float32)
        self.step_mask = (np.arange(self.model.options["context_length"])[None, :] < self.lengths[:, None]).astype(
            np.int64
        )
        for name, array in (("input_ids", self.step_ids), ("attention_mask", self.step_mask)):
            self.binding.bind_input(name, "cpu", 0, np.int64, array.shape, array.ctypes.data)
        self.binding.bind_output("logits", "cpu", 0, np.float32, self.step_logits.shape, self.step_logits.ctypes.data)


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
            self.state = [np.where(keep, new, old) for new, old in zip(self.state, before, strict=True)]
        return logits[:, -1]

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        return self._run(tokens[:, None])[:, -1]

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows``; the state holds no positions, so there are no columns to drop."""
        self.state = [np.ascontiguousarray(part[:, rows]) for part in self.state]

    def absorb(self, other: RecurrentRun) -> None:
        """Append ``other``'s sequences after these rows."""
        self.state = [
            np.concatenate([mine, theirs], axis=1) for mine, theirs in zip(self.state, other.state, strict=True)
        ]

    def _run(self, tokens: np.ndarray) -> np.ndarray:
        logits, *self.state = self.model.onnx.run(
            None, {"input_ids": tokens.astype(np.int64), "state.h": self.state[0], "state.c": self.state[1]}
        )
        return logits


def _left_pad(array: np.ndarray, width: int, axis: int) -> np.ndarray:
    """``array`` with zeros before its ``axis`` up to ``width`` long."""
    padding = [(0, 0)] * array.ndim
    padding[axis] = (width - array.shape[axis], 0)
    return np.pad(array, padding) if padding[axis][0] else array
