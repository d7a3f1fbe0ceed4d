"""Tokenizers that need no model: one token per character, or per whitespace-separated word.

Neither lowercases (as in the original toolkit), whatever ``do_lower_case`` says.
"""

from __future__ import annotations

from uer.tokenizers.vocab import Vocab, VocabTokenizer


class CharTokenizer(VocabTokenizer):
    """Every non-whitespace character is a token; whitespace only separates."""

    kind = "char"

    def __init__(self, vocab: Vocab):
        super().__init__(vocab, source="vocab")

    def tokenize(self, text: str) -> list[str]:
        return [char for char in text if not char.isspace()]


class SpaceTokenizer(VocabTokenizer):
    """Tokens are the whitespace-separated words (for pre-segmented text)."""

    kind = "space"

    def __init__(self, vocab: Vocab):
        super().__init__(vocab, source="vocab")

    def tokenize(self, text: str) -> list[str]:
        return text.split()
