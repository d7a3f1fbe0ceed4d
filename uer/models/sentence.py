"""One vector per sentence: the inputs and the pooling that ``tool=extract_feature`` and the
sentence-embedding tasks (``task=siamese``, ``task=simcse``) share, so that a fine-tuned
model's ``stage=infer`` embeddings and the tool's on the same checkpoint are the same numbers.

A sentence is framed as the tokenizer frames one text (``[CLS] tokens [SEP]`` for BERT
vocabularies, ``tokens </s>`` for T5; its tokens cut so the whole is at most ``seq_length``),
segment 1 on every real position; a batch is right-padded with id 0 and segment 0.
"""

from __future__ import annotations

import torch

from uer.models.pooling import pool


def sentence_ids(tokenizer, text: str, seq_length: int) -> list[int]:
    """``[CLS] text [SEP]`` (the tokenizer's framing) as ids, the text's tokens cut to fit ``seq_length``."""
    framing = tokenizer.framing
    return framing.frame(tokenizer.encode(text)[: seq_length - framing.added()])[0]


def pad_batch(sequences: list[list[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(src, seg)``: ids padded with 0 on the right, segment 1 on real tokens and 0 on padding."""
    length = max(len(ids) for ids in sequences)
    src = torch.zeros(len(sequences), length, dtype=torch.long)
    seg = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, ids in enumerate(sequences):
        src[row, :len(ids)] = torch.tensor(ids)
        seg[row, :len(ids)] = 1
    return src.to(device), seg.to(device)


def embed(backbone: torch.nn.Module, src: torch.Tensor, seg: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, H) float32: the last layer's hidden states of each row pooled over its real positions."""
    return pool(backbone(src, seg).float(), seg, pooling)
