"""BERT tokenization: basic splitting, then greedy longest-match-first WordPiece.

Clean the text (drop NUL, U+FFFD and control characters, whitespace -> space), space out
CJK ideographs, lowercase and strip accents (NFD, drop Mn) when ``do_lower_case``, split
off punctuation, then WordPiece with ``##`` continuations.  Two sets of rules differ on rare
text (``tokenizer.rules``):

* ``transformers`` (the default): exactly transformers' classic pure-Python
  ``BertTokenizer`` (``BertTokenizerLegacy`` since transformers 5) with its defaults.
  Words over 100 characters are ``[UNK]``; every character of a ``C*`` category (control,
  format, private-use, unassigned, surrogate) is dropped; the vocabulary's special tokens
  (``[CLS]``, ``[MASK]``, ...) written in the text stay whole.
* ``google``: Google's ``tokenization.py``, which the original UER-py copied.  Words of up
  to 200 characters are split into pieces; only control (Cc) and format (Cf) characters
  are dropped, so private-use and unassigned ones become ``[UNK]``; ``[MASK]`` written in
  the text is text like any other (``[``, ``mask``, ``]``).

On ordinary text the two agree (the original toolkit and ``transformers`` give the same
ids on 30,000 Chinese lines).  transformers 5's default ``BertTokenizer`` is the Rust
``tokenizers`` pipeline, which differs from both on rarer text (below).

Why pure Python and not the HuggingFace ``tokenizers`` Rust library: each per-character
step is one C-level ``str.translate`` over the whole text with a lazily filled table,
which on ``corpora/book_review.txt`` (20,000 lines, ~107 characters each, shared 2-core
machine) gives ~96,000 lines/s for ``encode_batch`` in one thread; the Rust pipeline
(BertNormalizer + BertPreTokenizer + WordPiece, ``encode_batch_fast``) gives the same ids
on every bundled line but manages only ~31,000 lines/s per thread (~59,000 on both
cores), and a per-character Python transcription of the original ~15,000.  Rust also
disagrees with the original on rarer text: it keeps unassigned code points (Python drops
them as category Cn), misclassifies characters newer than its Unicode tables, and
lowercases a word-final "Σ" to "σ" instead of "ς".  Results for characters added in
recent Unicode versions follow the running Python's ``unicodedata``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from uer.errors import UerError
from uer.tokenizers.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, Vocab, VocabTokenizer

RULES = ("transformers", "google")
# Longest word WordPiece splits; a longer one is [UNK].
MAX_CHARS_PER_WORD = {"transformers": 100, "google": 200}


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str, google: bool) -> bool:
    """transformers drops every C* character; Google only control (Cc) and format (Cf) ones."""
    if char in "\t\n\r":
        return False
    category = unicodedata.category(char)
    return category in ("Cc", "Cf") if google else category.startswith("C")


def _is_punctuation(char: str) -> bool:
    # All non-letter/number ASCII is punctuation here ("$", "^", "`" are not in Unicode P*).
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana), as in BERT."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class _CleanTable(dict):
    """``str.translate`` table: drop NUL/U+FFFD/controls, whitespace -> " ", pad CJK with spaces.

    Filled lazily, one entry per distinct code point seen, so one C-level ``translate``
    pass replaces BERT's per-character Python loops.  ``google``: Google's control characters.
    """

    def __init__(self, google: bool):
        super().__init__()
        self.google = google

    def __missing__(self, cp: int):
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char, self.google):
            value = None
        elif _is_whitespace(char):
            value = " "
        elif _is_cjk(cp):
            value = f" {char} "
        else:
            value = char
        self[cp] = value
        return value


class _PunctuationTable(dict):
    """``str.translate`` table: pad punctuation with spaces; optionally drop Mn (accents)."""

    def __init__(self, drop_marks: bool):
        super().__init__()
        self.drop_marks = drop_marks

    def __missing__(self, cp: int):
        char = chr(cp)
        if self.drop_marks and unicodedata.category(char) == "Mn":
            value = None
        elif _is_punctuation(char):
            value = f" {char} "
        else:
            value = char
        self[cp] = value
        return value


_CLEAN = {rules: _CleanTable(google=rules == "google") for rules in RULES}
_SPLIT_PUNCTUATION = {True: _PunctuationTable(drop_marks=True), False: _PunctuationTable(drop_marks=False)}


class BasicTokenizer:
    """Whitespace/punctuation/CJK splitting with optional lowercasing and accent stripping.

    Works on the whole text at once; this equals BERT's per-word processing because every
    step is per character except lowercasing ("Σ" -> "ς" at a word end) and NFD, and
    neither looks across whitespace.
    """

    def __init__(self, do_lower_case: bool = True, never_split: Sequence[str] = (), rules: str = "transformers"):
        self.do_lower_case = do_lower_case
        self.clean = _CLEAN[rules]
        self.never_split = frozenset(never_split)
        self._never_split_re = (
            re.compile("(" + "|".join(map(re.escape, sorted(never_split, key=len, reverse=True))) + ")")
            if never_split
            else None
        )

    def tokenize(self, text: str) -> list[str]:
        if self._never_split_re is None or "[" not in text:
            return self._split(text)
        tokens: list[str] = []
        for part in self._never_split_re.split(text):
            if part in self.never_split:
                tokens.append(part)
            elif part:
                tokens.extend(self._split(part))
        return tokens

    def _split(self, text: str) -> list[str]:
        text = text.translate(self.clean)
        if self.do_lower_case:
            text = text.lower()
            if not text.isascii():
                text = unicodedata.normalize("NFD", text)
        return text.translate(_SPLIT_PUNCTUATION[self.do_lower_case]).split()


class WordpieceTokenizer:
    """Greedy longest-match-first split of one word into vocabulary pieces."""

    def __init__(self, vocab: Vocab, max_chars_per_word: int = MAX_CHARS_PER_WORD["transformers"]):
        self.vocab = vocab
        self.max_chars_per_word = max_chars_per_word

    def tokenize(self, word: str) -> list[str]:
        vocab = self.vocab
        if len(word) > self.max_chars_per_word:
            return [vocab.unk_token]
        if word in vocab:
            return [word]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return [vocab.unk_token]
            pieces.append(piece)
            start = end
        return pieces


class BertTokenizer(VocabTokenizer):
    kind = "bert"

    def __init__(self, vocab: Vocab, do_lower_case: bool = True, rules: str = "transformers"):
        super().__init__(vocab, source="vocab")
        if rules not in RULES:
            raise UerError(f"unknown tokenizer.rules {rules!r}; choose one of: {', '.join(RULES)}")
        self.lowercases = do_lower_case
        self.rules = rules
        never_split = [PAD_TOKEN, vocab.unk_token, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN] if rules == "transformers" else []
        self.basic = BasicTokenizer(do_lower_case, never_split, rules)
        self.wordpiece = WordpieceTokenizer(vocab, MAX_CHARS_PER_WORD[rules])

    def identity(self) -> dict:
        """The base identity; Google's rules give other ids on rare text, so they are part of it."""
        identity = super().identity()
        if self.rules != "transformers":  # identities written before the option stay equal
            identity["rules"] = self.rules
        return identity

    def tokenize(self, text: str) -> list[str]:
        wordpiece = self.wordpiece.tokenize
        return [piece for word in self.basic.tokenize(text) for piece in wordpiece(word)]

    def encode(self, text: str) -> list[int]:
        # Same result as convert_tokens_to_ids(tokenize(text)), a third faster: most words
        # (every CJK character) are whole vocabulary entries and skip WordPiece.
        ids, longest = self.vocab.ids, self.wordpiece.max_chars_per_word
        out: list[int] = []
        for word in self.basic.tokenize(text):
            index = ids.get(word) if len(word) <= longest else None
            if index is None:
                out.extend(self.vocab.token_to_id(piece) for piece in self.wordpiece.tokenize(word))
            else:
                out.append(index)
        return out
