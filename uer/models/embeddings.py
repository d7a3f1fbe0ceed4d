"""Embedding layers: token ids (and segments) -> (B, L, emb_size).

Each option declares what it is: ``has_positions`` (a learned position embedding, so
the encoder need not know the order by itself) and its schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from omegaconf import II, MISSING
from torch import nn

from uer.config.fields import FRACTION, POSITIVE, at_least, setting
from uer.errors import UerError
from uer.models.dropout import Dropout
from uer.models.layer_norm import LAYERNORM_HELP, layer_norm
from uer.models.subencoders import SUBENCODERS, build_subencoder
from uer.registry import Registry

EMBEDDINGS: Registry = Registry("embedding", group="embedding")


@dataclass
class WordEmbeddingConfig:
    """``embedding=word``: word embedding, LayerNorm, dropout."""

    type: str = setting(MISSING, "word_pos_seg | word_pos | word (pick with embedding=)")
    emb_size: int = setting(II("model.emb_size"), "embedding width", bounds=at_least(1))
    dropout: float = setting(II("model.dropout"), "dropout after the embedding's LayerNorm", tunable=True,
                             bounds=FRACTION)
    layernorm_eps: float = setting(1e-6, "LayerNorm epsilon", bounds=POSITIVE)
    layernorm: Optional[str] = setting(None, LAYERNORM_HELP)
    remove_layernorm: bool = setting(False, "no LayerNorm after the sum of embeddings, dropout alone (GPT-2, whose "
                                            "layers normalise their inputs: encoder.layernorm_positioning=pre; the "
                                            "original's --remove_embedding_layernorm)")
    subencoder: str = setting("none", "add to each token's embedding a vector composed from its characters: "
                                      f"{' | '.join(SUBENCODERS)} (the original's --subword_type char --subencoder; "
                                      "uer/models/subencoders.py)")
    scale_embedding: bool = setting(False, "multiply the word embeddings by sqrt(emb_size) (BART's scale_embedding, "
                                           "the original Transformer's)")
    sub_layers_num: int = setting(2, "subencoder=lstm|gru: layers", bounds=at_least(1))
    kernel_size: int = setting(3, "subencoder=cnn: convolution width over the characters", bounds=at_least(1))


@dataclass
class PositionEmbeddingConfig(WordEmbeddingConfig):
    """``embedding=word_pos`` / ``word_pos_seg``: word + learned position (+ segment) embeddings."""

    max_seq_length: int = setting(II("model.max_seq_length"), "positions of the position embedding: the longest input",
                                  bounds=at_least(1))

SEGMENT_ROWS = 3  # 0 = padding, 1 = first segment, 2 = second segment (UER layout)


class WordPositionEmbedding(nn.Module):
    """Word (+ learned position) (+ segment) embeddings, then LayerNorm (unless ``remove_layernorm``) and
    dropout; then, with ``subencoder``, each token's vector composed from its characters."""

    has_positions = True
    uses_segments = True

    def __init__(self, cfg: WordEmbeddingConfig, vocab_size: int, tokens: Optional[Sequence[str]] = None):
        super().__init__()
        self.emb_size = cfg.emb_size
        self.word_scale = math.sqrt(cfg.emb_size) if cfg.scale_embedding else None
        self.word_embedding = nn.Embedding(vocab_size, cfg.emb_size)
        self.position_embedding = nn.Embedding(cfg.max_seq_length, cfg.emb_size) if self.has_positions else None
        self.segment_embedding = nn.Embedding(SEGMENT_ROWS, cfg.emb_size) if self.uses_segments else None
        norm = layer_norm(cfg.emb_size, cfg.layernorm_eps, cfg.layernorm)
        self.layer_norm = None if cfg.remove_layernorm else norm
        self.dropout = Dropout(cfg.dropout)
        self.subencoder = build_subencoder(cfg, tokens)

    def forward(self, src: torch.Tensor, seg: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """``first_position``: the position of ``src``'s first column (a decoder's step embeds one token at a time)."""
        emb = self.word_embedding(src)
        if self.word_scale is not None:
            emb = emb * self.word_scale
        if self.position_embedding is not None:
            end = first_position + src.size(1)
            if end > self.position_embedding.num_embeddings:
                raise UerError(
                    f"sequence length {end} exceeds embedding.max_seq_length "
                    f"{self.position_embedding.num_embeddings}; shorten seq_length"
                )
            emb = emb + self.position_embedding(torch.arange(first_position, end, device=src.device))
        if self.segment_embedding is not None:
            emb = emb + self.segment_embedding(seg)
        emb = self.dropout(self.layer_norm(emb) if self.layer_norm is not None else emb)
        if self.subencoder is not None:  # added after the LayerNorm, as the original's Model added it
            emb = emb + self.subencoder(src).to(emb.dtype)
        return emb


@EMBEDDINGS.register("word_pos_seg", config=PositionEmbeddingConfig)
class WordPosSegEmbedding(WordPositionEmbedding):
    """BERT / ALBERT embedding."""


@EMBEDDINGS.register("word_pos", config=PositionEmbeddingConfig)
class WordPosEmbedding(WordPositionEmbedding):
    """GPT embedding: no segments."""

    uses_segments = False


@EMBEDDINGS.register("word", config=WordEmbeddingConfig)
class WordEmbedding(WordPositionEmbedding):
    """Word embedding alone, for encoders that know the order themselves (RNN, CNN)."""

    has_positions = False
    uses_segments = False
