"""Text <-> token ids, with the ``tokenizers`` library; saved inside artifacts as ``tokenizer.json``.

Two kinds, both byte-level so that any UTF-8 text round-trips unchanged:
``bpe`` learns merges on the training corpus up to ``vocab_size`` tokens (as
GPT-2 does); ``char`` has one token per byte, i.e. per character for ASCII text.
Torch-free: the runtime uses it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from genloom.errors import ArtifactError

if TYPE_CHECKING:
    import tokenizers

END_OF_TEXT = "<|endoftext|>"
TokenizerKind = Literal["bpe", "char"]
BYTE_ALPHABET_SIZE = 256


class Tokenizer:
    """A trained tokenizer: ``encode``, ``decode``, its ``vocab_size`` and end-of-text id."""

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        self.backend = backend

    @classmethod
    def train(cls, text: str, kind: TokenizerKind, vocab_size: int) -> Tokenizer:
        """Learn a tokenizer on ``text``: BPE merges up to ``vocab_size`` (``bpe``), or just the 256 bytes
        (``char``)."""
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=kind == "bpe")
        backend.decoder = decoders.ByteLevel()
        size = vocab_size if kind == "bpe" else BYTE_ALPHABET_SIZE + 1
        trainer = trainers.BpeTrainer(
            vocab_size=size,
            special_tokens=[END_OF_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(_chunks(text) if kind == "bpe" else [""], trainer=trainer)
        return cls(backend)

    @classmethod
    def from_json(cls, data: str | bytes, where: str = "tokenizer.json") -> Tokenizer:
        """Load a saved tokenizer (ours, or a Hugging Face ``tokenizer.json``)."""
        from tokenizers import Tokenizer as Backend

        try:
            return cls(Backend.from_str(data.decode() if isinstance(data, bytes) else data))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception for bad files
            raise ArtifactError(f"{where} is not a readable tokenizer ({exc})") from None

    def to_json(self) -> str:
        """The whole tokenizer as JSON: vocabulary, merges, pre-tokenizer and decoder."""
        return self.backend.to_str()

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    @property
    def end_of_text(self) -> int:
        """Id of ``<|endoftext|>``: separates documents in training, stops generation."""
        token = self.backend.token_to_id(END_OF_TEXT)
        if token is None:
            raise ArtifactError(f"the tokenizer has no {END_OF_TEXT} token")
        return token

    def token_bytes(self) -> np.ndarray:
        """Bytes of text each token stands for (0 for special tokens), to turn nats per token into bits per byte."""
        special = {token.content for token in self.backend.get_added_tokens_decoder().values()}
        lengths = np.zeros(self.vocab_size, np.int64)
        for token, index in self.backend.get_vocab().items():
            lengths[index] = 0 if token in special else len(token)  # byte-level: one character per byte
        return lengths

    def encode_documents(self, text: str, start_with_end_of_text: bool = True) -> np.ndarray:
        """``text`` as one int64 token array, document by document (split at blank lines), each after
        ``<|endoftext|>`` when ``start_with_end_of_text``: the layout the text generators train on."""
        documents = [part for part in text.split("\n\n") if part.strip()]
        start = (self.end_of_text,) if start_with_end_of_text else ()
        encoded = self.backend.encode_batch(documents, add_special_tokens=False)
        return np.fromiter((t for e in encoded for t in (*start, *e.ids)), dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def _chunks(text: str, size: int = 1 << 16) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def evenly_spaced_windows(tokens: np.ndarray, length: int, count: int) -> np.ndarray:
    """Up to ``count`` windows of ``length + 1`` tokens (inputs and next-token targets), evenly spaced over
    ``tokens``."""
    starts = np.unique(np.linspace(0, len(tokens) - length - 1, num=min(count, len(tokens) - length)).astype(np.int64))
    return np.stack([tokens[start : start + length + 1] for start in starts])
