"""Text generators: ``gpt`` (decoder-only transformer with a KV cache) and ``lstm``.

Both share the tokenizer (``genloom.tokenizer``), the sampling layer
(``genloom.textgen``) and this training recipe: AdamW with weight decay, linear
warm-up then cosine decay, gradient clipping, validation loss, perplexity and bits
per byte on the held-out tail of the corpus, and early stopping.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import Field

import genloom
from genloom import weights
from genloom.errors import DataError
from genloom.tokenizer import Tokenizer, evenly_spaced_windows

if TYPE_CHECKING:
    import torch

    from genloom_text.gpt import GPT
    from genloom_text.lstm import LSTMLanguageModel
    from genloom_text.sessions import GPTSession, LSTMSession

NetworkT = TypeVar("NetworkT", bound="torch.nn.Module")
TOKENIZER_FILE = "tokenizer.json"
ADAPTER_FILE = "adapter.safetensors"
LoRATarget = Literal["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
"""The linear layers of a GPT block that can take a LoRA adapter."""
DEFAULT_LORA_TARGETS: tuple[LoRATarget, ...] = ("attn.c_attn", "attn.c_proj")
EVAL_WINDOWS = 64
"""Context windows of the validation split scored per evaluation (evenly spaced, the same every time)."""


class TextConfig(genloom.GeneratorConfig):
    """Knobs shared by the text generators."""

    steps: int = Field(1000, ge=1, description="Optimisation steps (at most: early stopping may end sooner).")
    batch_size: int = Field(16, ge=1, description="Windows of context_length tokens per step.")
    eval_every: int = Field(100, ge=0, description="Validation loss every N steps (0: only at the end).")
    checkpoint_every: int = Field(
        100, ge=0, description="Write a resumable checkpoint every N steps (0: only at the end)."
    )
    early_stopping_patience: int = Field(
        3, ge=0, description="Stop when validation loss has not improved for N evaluations (0: never)."
    )
    tokenizer: Literal["bpe", "char"] = Field(
        "bpe", description="Byte-level BPE learned on the corpus, or one token per byte ('char')."
    )
    vocab_size: int = Field(
        1024, ge=258, le=65536, description="Tokens in the BPE vocabulary (ignored by 'char': 257)."
    )
    context_length: int = Field(
        128, ge=8, le=8192, description="Tokens the model sees at once (training windows; the GPT's limit)."
    )
    width: int = Field(128, ge=8, le=8192, description="Embedding and hidden size.")
    layers: int = Field(4, ge=1, le=96, description="Transformer blocks or LSTM layers.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout while training.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak AdamW learning rate, reached after warm-up.")
    min_learning_rate: float = Field(2e-4, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(100, ge=0, description="Steps of linear learning-rate warm-up.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (matrices and embeddings only).")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0: no clipping).")


class GPTConfig(TextConfig):
    """Knobs of the GPT generator."""

    heads: int = Field(4, ge=1, le=128, description="Attention heads (width must be a multiple).")
    bias: bool = Field(True, description="Biases in the linear layers and LayerNorms (GPT-2 has them).")
    freeze_embeddings: bool = Field(
        False, description="Keep the token and position embeddings (and the head tied to them) as they are."
    )
    train_last_blocks: int | None = Field(
        None, ge=0, description="Train only the last N transformer blocks (and the final LayerNorm); None: all."
    )
    lora_rank: int = Field(
        0, ge=0, le=1024, description="LoRA: train rank-r updates of lora_targets instead of the weights (0: off)."
    )
    lora_alpha: float = Field(16.0, gt=0, description="LoRA: the updates are scaled by lora_alpha / lora_rank.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA: dropout on the adapters' input while training.")
    lora_targets: list[LoRATarget] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        min_length=1,
        description="LoRA: the linear layers of every block that get an adapter.",
    )


class LSTMConfig(TextConfig):
    """Knobs of the LSTM generator."""

    layers: int = Field(2, ge=1, le=16, description="Stacked LSTM layers.")
    width: int = Field(256, ge=8, le=8192, description="Embedding and hidden size.")


class LanguageModel(genloom.TextGenerator):
    """What the GPT and LSTM generators share: tokenizer, batches, optimisation, evaluation."""

    monitor = "val_loss"
    fixed_fields: ClassVar[tuple[str, ...]] = ("tokenizer", "vocab_size", "context_length", "width", "layers")
    capabilities = genloom.Capabilities(streamable=True, exportable=True)
    operations = {}
    config: TextConfig

    def __init__(self, config: genloom.GeneratorConfig) -> None:
        super().__init__(config)
        self._streams: dict[tuple[str, str, int], np.ndarray] = {}

    # -- data and tokenizer ----------------------------------------------------------

    def fit_data(self, data: Any) -> None:
        super().fit_data(data)
        self.tokenizer = Tokenizer.train(data.text, self.config.tokenizer, self.config.vocab_size)
        self.facts.update(vocab_size=self.tokenizer.vocab_size, prepend_end_of_text=True)
        self._check_length(data)

    def fit_data_from(self, data: Any, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Fine-tuning: the new corpus is tokenized with the base's tokenizer (its vocabulary is the embedding's),
        each document after ``<|endoftext|>`` as in every genloom run, so that prompts start with it too (an
        imported GPT-2 did not)."""
        if ADAPTER_FILE in files:
            raise genloom.ConfigError(
                "--init-from: the base is a LoRA fine-tune, whose adapters are not in its weights; fine-tune its own "
                "base instead, or --resume the LoRA run with more --steps"
            )
        self.restore(facts, files)
        self.facts = {**data.facts(), "vocab_size": facts["vocab_size"], "prepend_end_of_text": True}
        self._check_length(data)

    def _check_length(self, data: Any) -> None:
        tokens = len(self.token_stream(data))
        if tokens <= self.config.context_length:
            raise DataError(
                f"'{data.source}' holds {tokens} tokens, fewer than context_length; lower context_length or add text"
            )

    def restore(self, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        super().restore(facts, files)
        self.tokenizer = Tokenizer.from_json(files[TOKENIZER_FILE])

    def extra_files(self) -> dict[str, bytes]:
        return {TOKENIZER_FILE: self.tokenizer.to_json().encode()}

    def token_stream(self, data: Any) -> np.ndarray:
        """The corpus as one token array: each paragraph (documents split at blank lines) after
        ``<|endoftext|>``."""
        key = (data.source, data.part, len(data.text))
        if key not in self._streams:
            self._streams[key] = self.tokenizer.encode_documents(data.text)
        return self._streams[key]

    def get_batch(self, data: Any, rng: np.random.Generator) -> Any:
        import torch

        tokens, length = self.token_stream(data), self.config.context_length
        starts = rng.integers(0, len(tokens) - length, size=self.config.batch_size)
        windows = np.stack([tokens[s : s + length + 1] for s in starts])
        return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])

    # -- training -------------------------------------------------------------------

    @property
    def network(self) -> torch.nn.Module:
        return self.modules["model"]

    def _built_network(self, kind: type[NetworkT]) -> NetworkT:
        """:attr:`network` as the class :meth:`build` made it (the SDK holds every module as a plain ``nn.Module``)."""
        network = self.network
        assert isinstance(network, kind), f"module 'model' is a {type(network).__name__}, not the {kind.__name__} built"
        return network

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        import torch

        parameters = [p for p in self.network.parameters() if p.requires_grad]
        decay = [p for p in parameters if p.dim() >= 2]
        no_decay = [p for p in parameters if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return {"model": torch.optim.AdamW(groups, lr=self.config.learning_rate, betas=(0.9, 0.95))}

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up to ``learning_rate``, then cosine decay to ``min_learning_rate`` at the last step."""
        config = self.config
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (
            config.learning_rate - config.min_learning_rate
        )

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        inputs, targets = batch
        optimizer = optimizers["model"]
        rate = self.learning_rate_at(step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        logits, _ = self.network(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.unscale_gradients(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip or float("inf"))
        self.step(optimizer)
        return {"loss": loss.item(), "lr": rate, "grad_norm": norm.item()}

    def evaluate(self, data: Any) -> dict[str, float]:
        """Validation loss (nats per token), perplexity, and bits per byte of the text, beside a character
        bigram's."""
        import torch
        import torch.nn.functional as F

        tokens, length = self.token_stream(data), self.config.context_length
        if len(tokens) <= length:
            return {}
        windows = torch.from_numpy(evenly_spaced_windows(tokens, length, EVAL_WINDOWS))
        logits, _ = self.network(windows[:, :-1])
        losses = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction="none")
        byte_counts = torch.from_numpy(self.tokenizer.token_bytes())[windows[:, 1:].flatten()]
        loss = losses.mean().item()
        return {
            "val_loss": loss,
            "perplexity": math.exp(loss),
            "bits_per_byte": losses.sum().item() / math.log(2) / byte_counts.sum().item(),
        }

    # -- generation -------------------------------------------------------------------

    @property
    def context_length(self) -> int | None:
        return self.config.context_length

    def _driver_options(self, **layout: int) -> dict[str, Any]:
        return {
            "context_length": self.context_length,
            "prepend_end_of_text": self.prepend_end_of_text,
            "tokenizer": TOKENIZER_FILE,
            **layout,
        }

    def training_samples(self) -> dict[str, Any]:
        """Three sampled texts from an empty prompt, half a context long."""
        return {
            "prompt": "",
            "max_new_tokens": self.config.context_length // 2,
            "do_sample": True,
            "top_k": 40,
            "num_return_sequences": 3,
            "seed": self.config.seed,
        }


class GPTGenerator(LanguageModel):
    """Decoder-only transformer language model with a KV cache."""

    name = "gpt"
    fixed_fields = (*LanguageModel.fixed_fields, "heads", "bias")
    Config = GPTConfig
    description = "GPT: decoder-only transformer (pre-LN, tied embeddings) with KV cache; BPE or byte tokens"
    config: GPTConfig

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_text.gpt import GPT

        config = self.config
        if config.width % config.heads:
            raise genloom.ConfigError(
                f"field 'width': {config.width} is not a multiple of heads={config.heads}; "
                f"pick e.g. width={config.heads * (config.width // config.heads or 1)}"
            )
        gpt = GPT(
            self.facts["vocab_size"],
            config.context_length,
            config.layers,
            config.heads,
            config.width,
            config.bias,
            config.dropout,
        )
        if config.lora_rank:
            from genloom_text.lora import add_adapters

            add_adapters(gpt, config.lora_rank, config.lora_alpha, config.lora_dropout, list(config.lora_targets))
        else:
            _freeze(gpt, config.freeze_embeddings, config.train_last_blocks)
        return {"model": gpt}

    def added_tensors(self) -> set[str]:
        """The LoRA adapters, which no base holds."""
        from genloom_text.lora import ADAPTER_MARK

        return {name for name in weights.module_tensors(self.modules) if ADAPTER_MARK in name}

    def extra_files(self) -> dict[str, bytes]:
        """The tokenizer, and with LoRA the adapters alone (``adapter.safetensors``, small: what a fine-tune
        ships on top of its base; the weights file holds them too)."""
        files = super().extra_files()
        if self.config.lora_rank and self.modules:
            from genloom_text.lora import ADAPTER_METADATA, adapter_tensors

            config = self.config
            shape = {"rank": config.lora_rank, "alpha": config.lora_alpha, "targets": list(config.lora_targets)}
            adapters = adapter_tensors(weights.module_tensors(self.modules))
            files[ADAPTER_FILE] = weights.to_bytes(adapters, {ADAPTER_METADATA: json.dumps(shape)})
        return files

    def session(self) -> GPTSession:
        from genloom_text.sessions import GPTSession

        return GPTSession(self._gpt())

    def _gpt(self) -> GPT:
        from genloom_text.gpt import GPT

        return self._built_network(GPT)

    def export_spec(self) -> genloom.ExportSpec:
        """One ``decoder`` graph on ONNX Runtime's fused attention with an in-place KV cache (one new token costs
        one run over one position, copying nothing that grows with the text), the ONNX Runtime GenAI package
        files, and the portable graph of standard operators beside it (see ``genloom_text.decoder_export``). LoRA
        adapters are merged into the weights first: the export of a LoRA fine-tune is an ordinary graph."""
        from genloom_text.decoder_export import fused_decoder
        from genloom_text.lora import merged

        heads = self.config.heads
        options = self._driver_options(layers=self.config.layers, heads=heads, head_dim=self.config.width // heads)
        gpt = merged(self._gpt()) if self.config.lora_rank else self._gpt()
        return fused_decoder(gpt, self.tokenizer, options)


def _freeze(gpt: GPT, embeddings: bool, last_blocks: int | None) -> None:
    """Stop gradients to the embeddings (and the head tied to them) and to all but the last ``last_blocks``."""
    if embeddings:
        for parameter in (gpt.wte.weight, gpt.wpe.weight):
            parameter.requires_grad_(False)
    if last_blocks is not None:
        for block in gpt.blocks[: max(0, len(gpt.blocks) - last_blocks)]:
            block.requires_grad_(False)


class LSTMGenerator(LanguageModel):
    """Multi-layer LSTM language model; its recurrent state is carried between steps."""

    name = "lstm"
    Config = LSTMConfig
    description = "LSTM language model on the same tokenizer and sampling layers"
    config: LSTMConfig

    @property
    def context_length(self) -> int | None:
        return None

    def build(self) -> dict[str, torch.nn.Module]:
        from genloom_text.lstm import LSTMLanguageModel

        return {
            "model": LSTMLanguageModel(
                self.facts["vocab_size"], self.config.layers, self.config.width, self.config.dropout
            )
        }

    def session(self) -> LSTMSession:
        from genloom_text.sessions import LSTMSession

        return LSTMSession(self._lstm())

    def _lstm(self) -> LSTMLanguageModel:
        from genloom_text.lstm import LSTMLanguageModel

        return self._built_network(LSTMLanguageModel)

    def export_spec(self) -> genloom.ExportSpec:
        """One ``recurrent`` graph: token ids and the hidden and cell state in, logits and the new state out."""
        import torch

        from genloom_text.lstm import RecurrentGraph

        layers, width, vocab = self.config.layers, self.config.width, self.facts["vocab_size"]
        axes = {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
            **{name: {1: "batch_size"} for name in ("state.h", "state.c", "present_state.h", "present_state.c")},
        }

        def sample_inputs(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
            state = [rng.standard_normal((layers, batch, width), dtype=np.float32) * 0.5 for _ in range(2)]
            return (rng.integers(0, vocab, (batch, int(rng.integers(1, 4))), dtype=np.int64), *state)

        example = sample_inputs(2, np.random.default_rng(0))
        graph = genloom.GraphSpec(
            "recurrent",
            RecurrentGraph(self._lstm()),
            tuple(torch.from_numpy(x) for x in example),
            ["input_ids", "state.h", "state.c"],
            ["logits", "present_state.h", "present_state.c"],
            axes,
            sample_inputs,
        )
        return genloom.ExportSpec("text-recurrent", [graph], self._driver_options(layers=layers, width=width))
