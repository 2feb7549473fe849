"""LoRA (Hu et al. 2021) for the GPT: a linear layer's weight ``W`` stays frozen and learns a low-rank update
``(alpha / rank) * B @ A`` instead, with ``A`` (rank, in) drawn small and ``B`` (out, rank) zero, so that training
starts from the base model exactly.

:class:`LoRALinear` is an ``nn.Linear`` (its ``weight`` and ``bias`` keep their names, so a base's weights load
into it as they are) with ``lora_A`` and ``lora_B`` beside them. :func:`merged` folds the update into the
weights of a plain copy: what the export holds, an ordinary graph.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genloom_text.gpt import GPT

ADAPTER_MARK = ".lora_"
"""What the names of adapter tensors hold (``model.h.0.attn.c_attn.lora_A``)."""
ADAPTER_METADATA = "genloom_lora"
"""Metadata key of an adapter file: its rank, alpha and target layers, as JSON."""


class LoRALinear(nn.Linear):
    """``x W^T + b + (alpha / rank) * dropout(x) A^T B^T``; ``W`` and ``b`` frozen, ``A`` and ``B`` trained."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.weight, self.bias = linear.weight, linear.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, linear.in_features))
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft and the paper's code draw A
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return F.linear(x, self.weight, self.bias) + self.scale * update

    def merged_weight(self) -> torch.Tensor:
        return self.weight + self.scale * (self.lora_B @ self.lora_A)


def add_adapters(gpt: GPT, rank: int, alpha: float, dropout: float, targets: list[str]) -> None:
    """Replace each block's ``targets`` layers with :class:`LoRALinear` and freeze every other weight of ``gpt``."""
    for parameter in gpt.parameters():
        parameter.requires_grad_(False)
    for block in gpt.blocks:
        for target in targets:
            owner_name, layer_name = target.split(".")
            owner = getattr(block, owner_name)
            setattr(owner, layer_name, LoRALinear(getattr(owner, layer_name), rank, alpha, dropout))


def merged(gpt: GPT) -> GPT:
    """A copy of ``gpt`` with plain linear layers whose weights hold the adapters' updates."""
    plain = copy.deepcopy(gpt)
    for block in plain.blocks:
        for owner in (block.attn, block.mlp):
            for name, layer in list(owner.named_children()):
                if isinstance(layer, LoRALinear):
                    linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
                    with torch.no_grad():
                        linear.weight.copy_(layer.merged_weight())
                        if layer.bias is not None and linear.bias is not None:
                            linear.bias.copy_(layer.bias)
                    setattr(owner, name, linear)
    return plain


def adapter_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapters' tensors among a model's (``module_tensors`` names)."""
    return {name: tensor for name, tensor in tensors.items() if ADAPTER_MARK in name}


def apply_adapter(gpt: GPT, path: str | Path) -> None:
    """Put the adapters of a LoRA fine-tune (its ``adapter.safetensors``) on top of ``gpt``, the base it was
    fine-tuned from: ``apply_adapter(genloom.load("runs/base").generator.modules["model"],
    "runs/tuned/adapter.safetensors")``. Then ``gpt`` computes what the fine-tune computes."""
    from genloom import weights
    from genloom.errors import ArtifactError

    data = Path(path).read_bytes()
    tensors = weights.from_bytes(data, str(path))
    shape = weights.metadata_of(data).get(ADAPTER_METADATA)
    if shape is None:
        raise ArtifactError(f"{path} is not a genloom LoRA adapter (no '{ADAPTER_METADATA}' metadata)")
    settings = json.loads(shape)
    add_adapters(gpt, int(settings["rank"]), float(settings["alpha"]), 0.0, list(settings["targets"]))
    weights.load_module_tensors({"model": gpt}, {**weights.module_tensors({"model": gpt}), **tensors}, str(path))
