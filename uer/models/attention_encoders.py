"""Attention encoders besides the transformer: ``attn`` (self-attention only) and ``synt``
(Synthesizer, Tay et al. 2020).

Both honour ``encoder.mask`` (``fully_visible``, ``causal`` or ``causal_with_prefix``) and keep padded keys out
of real positions, like the transformer (see :func:`uer.models.encoders.attention_mask`).
Neither knows the order of its inputs by itself, so they need an embedding with
positions (``word_pos`` or ``word_pos_seg``).

* ``attn``: ``layers_num`` multi-head self-attention layers (``self_attn.L``, UER's names)
  with no feed-forward part and no LayerNorm; a residual connection around each layer
  keeps a deep stack trainable (UER's has none).
* ``synt``: transformer layers whose attention weights are *synthesized* instead of
  computed from query-key dot products.  ``synt_type: dense``: each position's weights
  over the ``max_seq_length`` positions come from its own vector through two linear
  layers (``dense_1``: H -> H, ReLU, split into heads; ``dense_2``: head size ->
  max_seq_length, shared by the heads) and are cut to the sequence's length.
  ``synt_type: random``: a learned (heads, max_seq_length, max_seq_length) matrix,
  the same for every input.  Values, output projection, feed-forward part and post-LN
  residuals are the transformer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from omegaconf import II
from torch import nn

from uer.config.fields import POSITIVE, at_least, setting
from uer.errors import UerError
from uer.models.dropout import Dropout
from uer.models.encoders import ENCODERS, MASKS, MaskedAttentionConfig, attention_mask, mask_context
from uer.models.layer_norm import LAYERNORM_HELP, layer_norm
from uer.models.layers import MultiHeadedAttention, PositionwiseFeedForward

SYNT_TYPES = ("dense", "random")


@dataclass
class SyntEncoderConfig(MaskedAttentionConfig):
    """``encoder=synt``: transformer layers with synthesized attention weights."""

    feedforward_size: int = setting(II("model.feedforward_size"), "feed-forward width", bounds=at_least(1))
    hidden_act: str = setting(II("model.hidden_act"), "feed-forward activation: gelu | gelu_fast | relu | silu")
    layernorm_eps: float = setting(1e-6, "LayerNorm epsilon", bounds=POSITIVE)
    layernorm: Optional[str] = setting(None, LAYERNORM_HELP)
    synt_type: str = setting("dense", "dense (weights from each position's vector) | random (learned matrix)")
    max_seq_length: int = setting(II("model.max_seq_length"), "positions the synthesized weights span",
                                  bounds=at_least(1))


def _check_heads(cfg: MaskedAttentionConfig) -> None:
    if cfg.mask not in MASKS:
        raise UerError(f"unknown encoder.mask {cfg.mask!r}; choose one of: {', '.join(MASKS)}")
    if cfg.hidden_size % cfg.heads_num:
        raise UerError(f"hidden_size {cfg.hidden_size} is not divisible by heads_num {cfg.heads_num}")


class AttentionOnlyEncoder(nn.Module):
    """What ``attn`` and ``synt`` declare: order-blind, context from ``mask``."""

    needs_positions = True
    variants = ("encoder.mask=causal",)
    context = staticmethod(mask_context)


@ENCODERS.register("attn", config=MaskedAttentionConfig)
class AttnEncoder(AttentionOnlyEncoder):
    def __init__(self, cfg: MaskedAttentionConfig, emb_size: int):
        super().__init__()
        _check_heads(cfg)
        self.hidden_size = cfg.hidden_size
        self.causal = cfg.mask == "causal"
        self.prefix = cfg.mask == "causal_with_prefix"
        self.linear = nn.Linear(emb_size, cfg.hidden_size) if emb_size != cfg.hidden_size else None
        self.self_attn = nn.ModuleList(
            MultiHeadedAttention(cfg.hidden_size, cfg.heads_num, cfg.dropout) for _ in range(cfg.layers_num)
        )
        self.dropout = Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(emb) if self.linear is not None else emb
        attn_mask, is_causal = attention_mask(seg, self.causal, self.prefix)
        for attn in self.self_attn:
            hidden = hidden + self.dropout(attn(hidden, attn_mask, is_causal))
        return hidden


class SynthesizerAttention(nn.Module):
    """Synthesized attention weights (dense or random) applied to projected values."""

    def __init__(self, hidden_size: int, heads_num: int, max_length: int, dropout: float, synt_type: str):
        super().__init__()
        self.heads_num = heads_num
        self.max_length = max_length
        self.synt_type = synt_type
        self.dropout = Dropout(dropout)
        if synt_type == "dense":
            self.dense_1 = nn.Linear(hidden_size, hidden_size)
            self.dense_2 = nn.Linear(hidden_size // heads_num, max_length)
        else:
            self.random_attn = nn.Parameter(torch.randn(heads_num, max_length, max_length) * 0.02)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.final_linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        batch, length, hidden = x.shape
        if self.synt_type == "dense":
            heads = F.relu(self.dense_1(x)).view(batch, length, self.heads_num, -1).transpose(1, 2)
            scores = self.dense_2(heads)[..., :length]  # (B, heads, L, L)
        else:
            scores = self.random_attn[:, :length, :length].unsqueeze(0)
        if is_causal:
            attn_mask = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        scores = scores.float()
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        value = self.value(x).view(batch, length, self.heads_num, -1).transpose(1, 2)
        context = torch.matmul(weights.to(value.dtype), value)
        return self.final_linear(context.transpose(1, 2).reshape(batch, length, hidden))


class SyntLayer(nn.Module):
    """Post-LN transformer layer with synthesized attention (names as in the transformer)."""

    def __init__(self, cfg, synt_type: str):
        super().__init__()
        self.self_attn = SynthesizerAttention(cfg.hidden_size, cfg.heads_num, cfg.max_seq_length, cfg.dropout,
                                              synt_type)
        self.layer_norm_1 = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm)
        self.feed_forward = PositionwiseFeedForward(cfg.hidden_size, cfg.feedforward_size, cfg.hidden_act)
        self.layer_norm_2 = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        x = self.layer_norm_1(x + self.dropout(self.self_attn(x, attn_mask, is_causal)))
        return self.layer_norm_2(x + self.dropout(self.feed_forward(x)))


@ENCODERS.register("synt", config=SyntEncoderConfig)
class SyntEncoder(AttentionOnlyEncoder):
    def __init__(self, cfg: SyntEncoderConfig, emb_size: int):
        super().__init__()
        _check_heads(cfg)
        synt_type = cfg.synt_type
        if synt_type not in SYNT_TYPES:
            raise UerError(f"unknown encoder.synt_type {synt_type!r}; choose one of: {', '.join(SYNT_TYPES)}")
        self.hidden_size = cfg.hidden_size
        self.max_length = cfg.max_seq_length
        self.causal = cfg.mask == "causal"
        self.prefix = cfg.mask == "causal_with_prefix"
        self.linear = nn.Linear(emb_size, cfg.hidden_size) if emb_size != cfg.hidden_size else None
        self.transformer = nn.ModuleList(SyntLayer(cfg, synt_type) for _ in range(cfg.layers_num))

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if emb.size(1) > self.max_length:
            raise UerError(f"sequence length {emb.size(1)} exceeds the {self.max_length} positions the synthesizer "
                           "attends over (model.max_seq_length); shorten seq_length")
        hidden = self.linear(emb) if self.linear is not None else emb
        attn_mask, is_causal = attention_mask(seg, self.causal, self.prefix)
        for layer in self.transformer:
            hidden = layer(hidden, attn_mask, is_causal)
        return hidden
