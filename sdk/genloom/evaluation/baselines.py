"""Reference models that a trained generator should beat, measured on the same split."""

from __future__ import annotations

import itertools
import math
from collections import Counter


def char_bigram_bits_per_byte(train: str, validation: str) -> float:
    """Bits per UTF-8 byte of ``validation`` under a character bigram model of ``train``.

    P(c | previous) is estimated with add-one smoothing over the training
    characters plus one slot for characters never seen in training.
    """
    alphabet = len(set(train)) + 1
    pairs = Counter(itertools.pairwise(train))
    contexts = Counter(train[:-1])
    bits = 0.0
    for previous, current in itertools.pairwise(validation):
        probability = (pairs[(previous, current)] + 1) / (contexts[previous] + alphabet)
        bits -= math.log2(probability)
    return bits / max(1, len(validation[1:].encode("utf-8")))
