"""Embedding layers: token ids (and segments) -> (B, L, emb_size)."""

from __future__ import annotations

import torch
from torch import nn

from uer.errors import UerError
from uer.models.dropout import Dropout
from uer.registry import Registry

EMBEDDINGS: Registry = Registry("embedding")

SEGMENT_ROWS = 3  # 0 = padding, 1 = first segment, 2 = second segment (UER layout)


class WordPositionEmbedding(nn.Module):
    """Word (+ learned position) (+ segment) embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg, vocab_size: int, use_segment: bool, use_position: bool = True):
        super().__init__()
        self.emb_size = cfg.emb_size
        self.word_embedding = nn.Embedding(vocab_size, cfg.emb_size)
        self.position_embedding = nn.Embedding(cfg.max_seq_length, cfg.emb_size) if use_position else None
        self.segment_embedding = nn.Embedding(SEGMENT_ROWS, cfg.emb_size) if use_segment else None
        self.layer_norm = nn.LayerNorm(cfg.emb_size, eps=cfg.layernorm_eps)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        emb = self.word_embedding(src)
        if self.position_embedding is not None:
            length = src.size(1)
            if length > self.position_embedding.num_embeddings:
                raise UerError(
                    f"sequence length {length} exceeds embedding.max_seq_length "
                    f"{self.position_embedding.num_embeddings}; shorten seq_length"
                )
            emb = emb + self.position_embedding(torch.arange(length, device=src.device))
        if self.segment_embedding is not None:
            emb = emb + self.segment_embedding(seg)
        return self.dropout(self.layer_norm(emb))


@EMBEDDINGS.register("word_pos_seg")
def word_pos_seg(cfg, vocab_size: int) -> WordPositionEmbedding:
    """BERT / ALBERT embedding."""
    return WordPositionEmbedding(cfg, vocab_size, use_segment=True)


@EMBEDDINGS.register("word_pos")
def word_pos(cfg, vocab_size: int) -> WordPositionEmbedding:
    """GPT embedding: no segments."""
    return WordPositionEmbedding(cfg, vocab_size, use_segment=False)


@EMBEDDINGS.register("word")
def word(cfg, vocab_size: int) -> WordPositionEmbedding:
    """Word embedding alone, for encoders that know the order themselves (RNN, CNN)."""
    return WordPositionEmbedding(cfg, vocab_size, use_segment=False, use_position=False)
