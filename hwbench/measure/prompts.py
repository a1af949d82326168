"""Prompts of a requested token length for a served model whose tokenizer hwbench may not have.

With a tokenizer (a local Hugging Face folder), a prompt is random token ids decoded to text, so
its length is exact up to the server's own template. Without one, it is synthetic text: words
drawn from a fixed list, seeded, with the word count calibrated against the server's own count
(usage.prompt_tokens of a 1-token request) so the length lands near the target. Either way the
length the server reports is recorded beside the target, never assumed.
"""

from __future__ import annotations

import numpy as np

# Short common English words: most are one token in every BPE vocabulary we know of, so the
# calibration ratio is near 1 and stable across prompts.
WORDS = (
    "the of and to in is was for on that with as by at it from his an were are which this be has or had "
    "not but first one their its new after who they two her she been other when there all during into "
    "school time may years more most only over city some world would where later up such used many can "
    "state about national out known university united then made team him under age game three while"
).split()


def synthetic_prompt(words: int, seed: int) -> str:
    """`words` words from WORDS, seeded."""
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=max(1, words)))


def words_for(tokens: int, tokens_per_word: float) -> int:
    """How many words give about `tokens` tokens at the calibrated ratio."""
    if tokens_per_word <= 0:
        raise ValueError(f"tokens_per_word must be positive, got {tokens_per_word}")
    return max(1, round(tokens / tokens_per_word))


def tokenizer_prompt(tokenizer: object, tokens: int, seed: int) -> str:
    """Random token ids of a Hugging Face tokenizer decoded to text (about `tokens` tokens once re-encoded)."""
    rng = np.random.default_rng(seed)
    vocab = int(getattr(tokenizer, "vocab_size"))
    ids = rng.integers(0, vocab, size=max(1, tokens)).tolist()
    return str(tokenizer.decode(ids, skip_special_tokens=True))  # type: ignore[attr-defined]
