"""The text benchmark's peer: what a user would run instead of a genloom GPT export, Hugging Face ``transformers``."""

from __future__ import annotations

from genloom.bench.text import PREFILL_TOKENS, Decoder


def transformers_decoder(layers: int, heads: int, width: int, context: int, vocab: int, cuda: bool = False) -> Decoder:
    """A randomly initialised Hugging Face GPT-2 of the same shape, decoded with ``generate()`` as its users run it;
    on CUDA where ``cuda`` and torch can use it. An ImportError without transformers."""
    import torch
    import transformers

    config = transformers.GPT2Config(
        n_layer=layers,
        n_head=heads,
        n_embd=width,
        n_positions=context,
        vocab_size=vocab,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    device = "cuda" if cuda and torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    peer = transformers.GPT2LMHeadModel(config).eval().to(device)
    prefill_tokens = min(PREFILL_TOKENS, context - 1)
    prompt = torch.randint(1, vocab, (1, prefill_tokens)).to(device)

    def run(ids: torch.Tensor, tokens: int) -> None:
        with torch.no_grad():
            peer.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
            ).cpu()

    def decode(batch: int, tokens: int) -> None:
        run(prompt[:, :2].repeat(batch, 1), tokens)

    def prefill() -> None:
        run(prompt, 1)

    label = "transformers generate" + (" (CUDA)" if device == "cuda" else "")
    return Decoder(
        label, decode, prefill, 4 * sum(p.numel() for p in peer.parameters()), prefill_tokens, on_cpu=device == "cpu"
    )
