"""Where a tokenizer's special tokens go around one text, or a pair of texts, and each token's segment.

Vocab files and SentencePiece models frame as BERT does: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]``
(A segment 1, B segment 2).  A Hugging Face tokenizer frames as its own post-processor does, so a model
sees in uer what it saw in transformers: GPT-2 adds nothing, T5 appends ``</s>`` (pair:
``A </s> B </s>``), RoBERTa writes ``<s> A </s></s> B </s>``; segment = the token type + 1
(:mod:`uer.tokenizers.hf` reads the template off the post-processor).  A pair needs something
between its texts: a tokenizer whose template puts nothing there has no :attr:`Framing.pair`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

A, B = "A", "B"  # where the first and second text go in a template
Template = tuple[tuple[object, int], ...]  # (token id, or A / B; segment) in order


@dataclass(frozen=True)
class Framing:
    single: Template
    pair: Template | None  # None: nothing separates a pair's texts

    @classmethod
    def bert(cls, cls_id: int, sep_id: int) -> "Framing":
        """``[CLS] A [SEP] (B [SEP])``, B in segment 2."""
        return cls(((cls_id, 1), (A, 1), (sep_id, 1)), ((cls_id, 1), (A, 1), (sep_id, 1), (B, 2), (sep_id, 2)))

    def added(self, pair: bool = False) -> int:
        """How many special tokens framing adds to one text (or to a pair)."""
        return sum(piece not in (A, B) for piece, _ in (self.pair if pair else self.single))

    @property
    def prefix(self) -> list[int]:
        """The special tokens before a single text (``[CLS]``; none for GPT-2 and T5): what a prompt starts with."""
        ids = []
        for piece, _ in self.single:
            if piece == A:
                return ids
            ids.append(piece)
        return ids

    def frame(self, a: Sequence[int], b: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
        """``(ids, segments)`` of text ``a`` (and ``b``) with the special tokens around them."""
        template = self.single if b is None else self.pair
        if template is None:
            raise ValueError("this tokenizer frames no pairs; check Framing.pair first")
        ids, segments = [], []
        for piece, segment in template:
            part = a if piece == A else b if piece == B else [piece]
            ids += part
            segments += [segment] * len(part)
        return ids, segments
