"""BERT tokenization: basic splitting, then greedy longest-match-first WordPiece.

:class:`BasicTokenizer` and :class:`WordpieceTokenizer` are the reference: they give the
same tokens as Google's original ``tokenization.py`` (clean the text, space out CJK
characters, lowercase and strip accents when ``do_lower_case``, split off punctuation,
then WordPiece with ``##`` continuations, words over 100 characters -> ``[UNK]``), except
that the vocabulary's special tokens (``[CLS]``, ``[MASK]``, ...) written in the text are
kept whole.  ``tokenize()`` always uses them.

Why a second implementation: ``encode``/``encode_batch`` run the same pipeline in the
HuggingFace ``tokenizers`` Rust library (BertNormalizer + BertPreTokenizer + WordPiece).
On ``corpora/book_review.txt`` (20,000 lines, about 107 characters each, 2-core machine)
the pure-Python ``encode`` does about 13,000 lines/s and the Rust ``encode_batch`` about
135,000 lines/s (one thread: 60,000), which is what makes preprocessing a large corpus
bearable.  The two give the same ids on every bundled line (``tests/test_tokenizers.py``
checks it) and, over all Unicode code points, differ only on the characters matched by
``_PYTHON_ONLY``; a text containing one of those goes through the Python reference, so
``encode(text) == convert_tokens_to_ids(tokenize(text))`` for every text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from uer.tokenizers.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, Vocab, VocabTokenizer

MAX_CHARS_PER_WORD = 100

# Characters on which the Rust normalizer and the reference disagree (found by running
# both on every code point, see the module docstring): "Σ", which Python lowercases to
# "ς" at the end of a word and Rust always to "σ".
_PYTHON_ONLY = re.compile("[\u03a3]")


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


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
    pass replaces BERT's per-character Python loops.
    """

    def __missing__(self, cp: int):
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
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


_CLEAN = _CleanTable()
_SPLIT_PUNCTUATION = {True: _PunctuationTable(drop_marks=True), False: _PunctuationTable(drop_marks=False)}


class BasicTokenizer:
    """Whitespace/punctuation/CJK splitting with optional lowercasing and accent stripping.

    Works on the whole text at once; this equals BERT's per-word processing because every
    step is per character except lowercasing ("Σ" -> "ς" at a word end) and NFD, and
    neither looks across whitespace.
    """

    def __init__(self, do_lower_case: bool = True, never_split: Sequence[str] = ()):
        self.do_lower_case = do_lower_case
        self.never_split = frozenset(never_split)
        self._never_split_re = (
            re.compile("(" + "|".join(map(re.escape, sorted(never_split, key=len, reverse=True))) + ")")
            if never_split
            else None
        )
        self._punctuation = _SPLIT_PUNCTUATION[do_lower_case]

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
        text = text.translate(_CLEAN)
        if self.do_lower_case:
            text = text.lower()
            if not text.isascii():
                text = unicodedata.normalize("NFD", text)
        return text.translate(self._punctuation).split()


class WordpieceTokenizer:
    """Greedy longest-match-first split of one word into vocabulary pieces."""

    def __init__(self, vocab: Vocab, max_chars_per_word: int = MAX_CHARS_PER_WORD):
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


def _rust_tokenizer(vocab: Vocab, do_lower_case: bool, never_split: Sequence[str]):
    """The same pipeline in the HuggingFace ``tokenizers`` library."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    ids = {token: i for i, token in enumerate(vocab.tokens)}
    rust = Tokenizer(
        models.WordPiece(ids, unk_token=vocab.unk_token, max_input_chars_per_word=MAX_CHARS_PER_WORD)
    )
    rust.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=do_lower_case, lowercase=do_lower_case
    )
    rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    rust.add_special_tokens(list(never_split))
    return rust


class BertTokenizer(VocabTokenizer):
    kind = "bert"

    def __init__(self, vocab: Vocab, do_lower_case: bool = True):
        super().__init__(vocab, source="vocab")
        self.lowercases = do_lower_case
        never_split = [PAD_TOKEN, vocab.unk_token, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN]
        self.basic = BasicTokenizer(do_lower_case, never_split)
        self.wordpiece = WordpieceTokenizer(vocab)
        self._rust = _rust_tokenizer(vocab, do_lower_case, never_split)

    def tokenize(self, text: str) -> list[str]:
        wordpiece = self.wordpiece.tokenize
        return [piece for word in self.basic.tokenize(text) for piece in wordpiece(word)]

    def encode(self, text: str) -> list[int]:
        if _PYTHON_ONLY.search(text):
            return self.convert_tokens_to_ids(self.tokenize(text))
        return self._rust.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        encodings = self._rust.encode_batch_fast(texts, add_special_tokens=False)
        return [
            self.convert_tokens_to_ids(self.tokenize(text)) if _PYTHON_ONLY.search(text) else encoding.ids
            for text, encoding in zip(texts, encodings)
        ]
