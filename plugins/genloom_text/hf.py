"""Load a Hugging Face GPT-2 checkpoint directory (as ``save_pretrained`` writes it) into the GPT generator.

Reads ``config.json``, ``model.safetensors`` and ``tokenizer.json`` from local
disk only. GPT-2 stores its linear layers as ``Conv1D`` (weights ``(in, out)``);
they are transposed into ``nn.Linear``. Everything else maps by name.
"""

from __future__ import annotations

import json
from pathlib import Path

from genloom.errors import ArtifactError
from genloom.tokenizer import Tokenizer
from genloom_text.generator import TOKENIZER_FILE, GPTConfig, GPTGenerator

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load_gpt2(directory: str | Path) -> GPTGenerator:
    """A ready GPT generator with the weights and tokenizer of the GPT-2 checkpoint in ``directory``.

    Save it as a genloom model with ``genloom.save(load_gpt2(path), out)``.
    """
    import torch

    from genloom.weights import from_bytes

    root = Path(directory)
    files = {name: root / name for name in ("config.json", "model.safetensors", TOKENIZER_FILE)}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ArtifactError(
            f"'{root}' is not a GPT-2 checkpoint: no {', '.join(missing)} "
            "(save it with save_pretrained, safetensors and a fast tokenizer)"
        )
    hf = json.loads(files["config.json"].read_text())
    if hf.get("model_type") != "gpt2":
        raise ArtifactError(
            f"'{root}/config.json' describes a '{hf.get('model_type')}' model; only gpt2 loads into the gpt generator"
        )
    if hf.get("activation_function", "gelu_new") != "gelu_new" or hf.get("layer_norm_epsilon", 1e-5) != 1e-5:
        raise ArtifactError(
            f"'{root}/config.json': only gelu_new activations and layer_norm_epsilon=1e-5 are supported"
        )
    config = GPTConfig(
        context_length=hf["n_positions"],
        width=hf["n_embd"],
        layers=hf["n_layer"],
        heads=hf["n_head"],
        bias=True,
        vocab_size=min(max(hf["vocab_size"], 258), 65536),
    )
    generator = GPTGenerator(config)
    generator.tokenizer = Tokenizer.from_json(files[TOKENIZER_FILE].read_bytes(), str(files[TOKENIZER_FILE]))
    generator.facts = {
        "vocab_size": hf["vocab_size"],
        "prepend_end_of_text": False,
        "imported_from": "huggingface gpt2",
    }
    torch.manual_seed(0)
    generator.modules = generator.build()
    tensors = from_bytes(files["model.safetensors"].read_bytes(), str(files["model.safetensors"]))
    state = {}
    for key, tensor in tensors.items():
        name = key.removeprefix("transformer.")
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # old checkpoints keep the causal mask as a buffer
        state[name] = tensor.t() if name.endswith(CONV1D_SUFFIXES) else tensor
    state.setdefault("lm_head.weight", state["wte.weight"])
    try:
        generator.network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"'{files['model.safetensors']}' does not fit a GPT-2 of this config.json: {exc}") from None
    return generator
