"""Word boundaries for whole-word masking: which tokens of a line start a word.

A line is segmented into words (``jieba`` for Chinese, or ``whitespace`` runs for
languages that separate words) and the tokenizer's tokens of the *same, unchanged*
line are aligned to those words by their character positions: a token starts a word
when its first character lies in another word than the previous token's first
character.  WordPiece continuations (``##...``) never start a word, whatever the
segmenter says, and a token that cannot be placed in the line (``[UNK]``, a token the
normalizer changed beyond lowercasing and accent removal) starts a word of its own.

The ids are exactly those of plain tokenization, so a dataset with whole-word masking
holds the same tokens as one without; only the masks differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from dataclasses import dataclass

import numpy as np

from uer.errors import UerError, reason

SEGMENTERS = ("jieba", "whitespace")
INSTALL_HINT = 'pip install -e ".[wwm]"'
CONTINUATION = "##"
SPM_WORD_START = "\u2581"

_jieba_by_dict: dict = {}  # per process: dict path (or None) -> an initialised jieba.Tokenizer


@dataclass(frozen=True)
class WordSegmenter:
    """Which segmenter and which user dictionary (picklable; jieba is loaded in each process on first use)."""

    name: str = "jieba"
    dict_path: str | None = None

    def check(self) -> None:
        """Refuse an unknown segmenter, a missing jieba or an unreadable dictionary, before any work."""
        if self.name not in SEGMENTERS:
            raise UerError(f"preprocess.word_segmenter={self.name} is not one of {', '.join(SEGMENTERS)}")
        if self.name != "jieba":
            if self.dict_path:
                raise UerError(f"preprocess.segmenter_dict is a jieba user dictionary, but "
                               f"preprocess.word_segmenter={self.name}; unset it or use word_segmenter=jieba")
            return
        _import_jieba()
        if self.dict_path:
            try:
                with open(self.dict_path, encoding="utf-8") as f:
                    f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise UerError(f"preprocess.segmenter_dict={self.dict_path} cannot be read ({reason(e)}); "
                               "give a readable jieba user dictionary (UTF-8, one word a line)") from None

    def describe(self) -> dict:
        """What decides the segmentation, for meta.json."""
        recipe = {"segmenter": self.name}
        if self.name == "jieba":
            recipe["jieba_version"] = _import_jieba().__version__
            recipe["dict"] = os.path.abspath(self.dict_path) if self.dict_path else None
            if self.dict_path:
                with open(self.dict_path, "rb") as f:
                    recipe["dict_sha256"] = hashlib.sha256(f.read()).hexdigest()
        return recipe

    def words(self, line: str) -> list[tuple[int, int]]:
        """``(start, end)`` character spans of the words of ``line`` (whitespace belongs to no word)."""
        if self.name == "whitespace":
            pieces = line.split()
            spans, cursor = [], 0
            for piece in pieces:
                start = line.index(piece, cursor)
                cursor = start + len(piece)
                spans.append((start, cursor))
            return spans
        spans = []
        for word, start, end in _jieba(self.dict_path).tokenize(line):
            if not word.isspace():
                spans.append((start, end))
        return spans


def _import_jieba():
    try:
        import jieba  # lazy: an optional extra only whole-word masking needs
    except ImportError:
        raise UerError(f"preprocess.word_segmenter=jieba needs the jieba package, which is not installed: "
                       f"{INSTALL_HINT}") from None
    return jieba


def _jieba(dict_path: str | None):
    """The jieba segmenter of this process for ``dict_path``, loaded on first use."""
    segmenter = _jieba_by_dict.get(dict_path)
    if segmenter is None:
        jieba = _import_jieba()
        jieba.setLogLevel(logging.WARNING)
        segmenter = jieba.Tokenizer()
        segmenter.initialize()
        if dict_path:
            segmenter.load_userdict(dict_path)
        _jieba_by_dict[dict_path] = segmenter
    return segmenter


def line_word_starts(line: str, ids: list[int], tokenizer, segmenter: WordSegmenter) -> np.ndarray:
    """A bool per token of ``ids`` (the tokenizer's ids of ``line``): whether it starts a word."""
    starts = np.ones(len(ids), dtype=bool)
    if not ids:
        return starts
    spans = segmenter.words(line)
    word_at = np.full(len(line) + 1, -1, dtype=np.int64)
    for number, (start, end) in enumerate(spans):
        word_at[start:end] = number
    offsets = token_starts(line, ids, tokenizer)
    previous_word = -1
    for i, (offset, token) in enumerate(zip(offsets, tokenizer.convert_ids_to_tokens(ids))):
        word = int(word_at[offset]) if offset >= 0 else -1
        continues = token.startswith(CONTINUATION) and len(token) > len(CONTINUATION)
        starts[i] = i == 0 or not (continues or (word >= 0 and word == previous_word))
        previous_word = word
    return starts


def token_starts(line: str, ids: list[int], tokenizer) -> list[int]:
    """The character of ``line`` where each token begins, -1 where it cannot be placed.

    Tokenizers that track offsets (``encode_with_offsets``) say so themselves; for the others each
    token's text (without ``##`` or ``▁``) is searched for from the end of the previous one, in a
    lowercased, accent-free copy of the line mapped back to the original characters."""
    if hasattr(tokenizer, "encode_with_offsets"):
        offset_ids, spans = tokenizer.encode_with_offsets(line)
        if list(offset_ids) != list(ids):
            raise RuntimeError("the tokenizer's encode_with_offsets disagrees with its encode_batch")
        return [_first_visible(line, start) for start, _ in spans]
    folded, origin = _fold(line)
    offsets, cursor = [], 0
    for token in tokenizer.convert_ids_to_tokens(ids):
        surface = _fold(_surface(token))[0]
        found = folded.find(surface, cursor) if surface else -1
        offsets.append(origin[found] if found >= 0 else -1)
        if found >= 0:
            cursor = found + len(surface)
    return offsets


def _first_visible(line: str, start: int) -> int:
    """The first non-space character of ``line`` from ``start`` on, -1 for none: a byte-level BPE token
    spanning the space before a word (``Ġ``, alone or with the word's first letters) belongs to that word."""
    for index in range(start, len(line)):
        if not line[index].isspace():
            return index
    return -1


def _surface(token: str) -> str:
    if token.startswith(CONTINUATION) and len(token) > len(CONTINUATION):
        return token[len(CONTINUATION):]
    return token.lstrip(SPM_WORD_START)


def _fold(text: str) -> tuple[str, list[int]]:
    """``text`` lowercased without combining marks, and the index in ``text`` of each character kept."""
    chars, origin = [], []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFD", char.lower()):
            if unicodedata.category(part) != "Mn":
                chars.append(part)
                origin.append(index)
    return "".join(chars), origin
