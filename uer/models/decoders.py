"""Decoders: target tokens + the encoder's states -> hidden states (B, L_tgt, hidden_size), for ``target=seq2seq``.

``decoder=transformer``: layers of causal self-attention (``self_attn``), cross-attention over the
encoder's output (``context_attn``, keys and values from the encoder's states) and a feed-forward part,
each with a residual connection and a LayerNorm (``layer_norm_1/2/3``, the original toolkit's names),
after the sum (post-LN: BART) or before the sub-layer with one after the stack (pre-LN: T5).  The layers
are the encoder's parts (:mod:`uer.models.layers`) with the same options: RMS norm, no biases, unscaled
attention, gated GELU, T5's relative position bias (``relative_pos_emb``, causal buckets, on
self-attention only).

The decoder embeds its input with an embedding of the model's ``embedding`` kind (its own positions,
segment 1), whose word embedding is the encoder's with ``shared_embedding``.  Incremental decoding
(:meth:`TransformerDecoder.start` / :meth:`TransformerDecoder.step`) keeps the self-attention's keys and
values of the tokens so far and computes the cross-attention's once per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from omegaconf import II, MISSING
from torch import nn
from torch.utils.checkpoint import checkpoint

from uer.config.fields import FRACTION, at_least, setting
from uer.errors import UerError
from uer.models.encoders import TransformerLayersConfig, biased_mask, relative_position_bias, unpadded
from uer.models.layer_norm import layer_norm
from uer.models.layers import (KeyValueCache, MultiHeadedAttention, check_positioning, feed_forward, recipes_off,
                               residual)
from uer.registry import Registry

DECODERS: Registry = Registry("decoder", group="decoder")

MemoryKeysValues = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DecoderSizes:
    """The sizes of a decoder (first in its schema)."""

    type: str = setting(MISSING, "the decoder class: transformer (pick with decoder=; null: no decoder)")
    hidden_size: int = setting(II("model.hidden_size"), "decoder width (the encoder's: cross-attention reads its "
                                                        "states)", bounds=at_least(1))
    layers_num: int = setting(II("model.layers_num"), "decoder layers", bounds=at_least(1))
    heads_num: int = setting(II("model.heads_num"), "attention heads", bounds=at_least(1))
    dropout: float = setting(II("model.dropout"), "dropout probability inside the decoder", tunable=True,
                             bounds=FRACTION)


@dataclass
class DecoderConfig(TransformerLayersConfig, DecoderSizes):
    """``decoder=transformer``: causal self-attention, cross-attention over the encoder's states, feed-forward."""

    shared_embedding: bool = setting(True, "the decoder's word embedding is the encoder's (T5, BART); false: its "
                                           "own")
    start_id: Optional[int] = setting(None, "the token id the decoder's input starts with (T5: 0, the padding; "
                                            "BART: </s>); null = the tokenizer's [CLS], set by stage=pretrain",
                                      bounds=at_least(0))


@dataclass
class DecoderState:
    """What incremental decoding keeps for a batch of N rows: the encoder's output (``memory``, its key
    padding mask), every layer's cross-attention keys and values, the self-attention cache, and which source
    each row decodes (``sources``, (N,))."""

    memory: torch.Tensor
    memory_mask: Optional[torch.Tensor]
    memory_keys_values: MemoryKeysValues
    cache: KeyValueCache
    sources: torch.Tensor

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of everything, in that order (beam search).  The encoder's part of a row depends
        only on its source: when every row keeps its source (beams reordered among their own source's rows, as
        at most steps of beam search) it stays as it is."""
        sources = self.sources.index_select(0, index)
        if not torch.equal(sources, self.sources):
            self.memory = self.memory.index_select(0, index)
            if self.memory_mask is not None:
                self.memory_mask = self.memory_mask.index_select(0, index)
            self.memory_keys_values = [(key.index_select(0, index), value.index_select(0, index))
                                       for key, value in self.memory_keys_values]
            self.sources = sources
        self.cache.reorder(index)


def memory_mask(seg: torch.Tensor) -> Optional[torch.Tensor]:
    """(B, 1, 1, L_src) True at the source's real tokens (segment ids 0 = padding); None without padding."""
    keep = seg != 0
    return None if unpadded(keep) else keep[:, None, None, :]


class TransformerDecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.pre = check_positioning(cfg.layernorm_positioning, "decoder") == "pre"
        self.p = cfg.dropout

        def attention() -> MultiHeadedAttention:
            return MultiHeadedAttention(cfg.hidden_size, cfg.heads_num, cfg.dropout, cfg.bias, cfg.scaled_attention)

        self.self_attn = attention()
        self.layer_norm_1 = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm)
        self.context_attn = attention()
        self.layer_norm_2 = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm)
        self.feed_forward = feed_forward(cfg.hidden_size, cfg.feedforward_size, cfg.hidden_act, cfg.bias,
                                         cfg.feedforward, "decoder")
        self.layer_norm_3 = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm)

    def _block(self, x: torch.Tensor, norm: nn.Module, sublayer: Callable[[torch.Tensor], torch.Tensor], *,
               last: bool = False):
        """Pre-LN ``x + sublayer(norm(x))``, post-LN ``norm(x + sublayer(x))`` (dropout on the sub-layer).  The
        ``last`` block's sum is what the layer returns: pre-LN, a tensor of its own rather than a view of the
        sub-layer's output (see TransformerLayer.forward)."""
        if self.pre:
            return residual(x, sublayer(norm(x)).view(x.shape), self.p, self.training, new=last)
        return norm(residual(x, sublayer(x).view(x.shape), self.p, self.training))

    def forward(self, x: torch.Tensor, self_mask: Optional[torch.Tensor], is_causal: bool, memory: torch.Tensor,
                cross_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``memory``: the encoder's output, projected to keys and values here, inside the layer's own forward
        (an FSDP unit's weights are gathered only for that)."""
        x = self._block(x, self.layer_norm_1, lambda h: self.self_attn.flat_output(h, self_mask, is_causal))
        return self._cross_and_feed_forward(x, self.context_attn.memory_keys_values(memory), cross_mask)

    def forward_incremental(self, x: torch.Tensor, cache: KeyValueCache, slot: int,
                            position_bias: Optional[torch.Tensor], memory: tuple[torch.Tensor, torch.Tensor],
                            cross_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """:meth:`forward` for the new positions only, the earlier ones' keys/values from ``cache``."""
        x = self._block(x, self.layer_norm_1,
                        lambda h: self.self_attn.forward_incremental(h, cache, slot, position_bias))
        return self._cross_and_feed_forward(x, memory, cross_mask)

    def _cross_and_feed_forward(self, x, memory, cross_mask) -> torch.Tensor:
        x = self._block(x, self.layer_norm_2, lambda h: self.context_attn.flat_output(h, cross_mask, False, memory))
        return self._block(x, self.layer_norm_3, self.feed_forward, last=True)


@DECODERS.register("transformer", config=DecoderConfig)
class TransformerDecoder(nn.Module):
    """Embedding + transformer decoder layers (+ a final LayerNorm when pre-LN); see the module docstring."""

    @staticmethod
    def needs_positions(cfg: DecoderConfig) -> bool:
        """Order-blind, unless relative positions bias its self-attention (T5)."""
        return not cfg.relative_position_buckets

    def __init__(self, cfg: DecoderConfig, embedding: nn.Module):
        super().__init__()
        if cfg.hidden_size % cfg.heads_num:
            raise UerError(f"decoder.hidden_size {cfg.hidden_size} is not divisible by decoder.heads_num "
                           f"{cfg.heads_num}")
        self.start_id = cfg.start_id
        self.embedding = embedding
        self.linear = nn.Linear(embedding.emb_size, cfg.hidden_size) if embedding.emb_size != cfg.hidden_size \
            else None
        self.transformer = nn.ModuleList(TransformerDecoderLayer(cfg) for _ in range(cfg.layers_num))
        self.layer_norm = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm) \
            if cfg.layernorm_positioning == "pre" else None
        self.relative_pos_emb = relative_position_bias(cfg, bidirectional=False)
        self.activation_checkpointing = False

    def enable_activation_checkpointing(self) -> None:
        """As the encoder's: keep only each layer's inputs for backward and run the layer again there."""
        self.activation_checkpointing = True
        recipes_off(self)

    @property
    def max_positions(self) -> Optional[int]:
        """The longest input the decoder's position embedding holds; None with relative positions."""
        positions = getattr(self.embedding, "position_embedding", None)
        return positions.num_embeddings if positions is not None else None

    def _embed(self, tgt: torch.Tensor, first_position: int) -> torch.Tensor:
        emb = self.embedding(tgt, torch.ones_like(tgt), first_position)
        return self.linear(emb) if self.linear is not None else emb

    def _finish(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(hidden) if self.layer_norm is not None else hidden

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Hidden states of every target position (teacher forcing) given the encoder's ``memory`` of a source
        whose segment ids are ``seg`` (0 = padding).  Target padding comes after the real tokens, which the
        causal mask keeps from seeing it; its positions carry no label."""
        hidden = self._embed(tgt, 0)
        self_mask, is_causal = None, True
        if self.relative_pos_emb is not None:
            length = tgt.size(1)
            self_mask, is_causal = biased_mask(self.relative_pos_emb(length, length), None, True)
        cross_mask = memory_mask(seg)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.transformer:
            if recompute:  # the dropout masks are drawn again from the saved RNG state: same as without
                hidden = checkpoint(layer, hidden, self_mask, is_causal, memory, cross_mask, use_reentrant=False)
            else:
                hidden = layer(hidden, self_mask, is_causal, memory, cross_mask)
        return self._finish(hidden)

    def start(self, memory: torch.Tensor, seg: torch.Tensor) -> DecoderState:
        """The state of incremental decoding for the encoder's ``memory`` (cross-attention keys/values computed
        here, once)."""
        keys_values = [layer.context_attn.memory_keys_values(memory) for layer in self.transformer]
        return DecoderState(memory, memory_mask(seg), keys_values, KeyValueCache(len(self.transformer),
                                                                                 self.max_positions),
                            torch.arange(memory.size(0), device=memory.device))

    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Hidden states (N, H) after the last tokens (N,), given the earlier ones in ``state`` (advanced)."""
        past = state.cache.length
        hidden = self._embed(tokens[:, None], past)
        bias = self.relative_pos_emb(1, past + 1, past) if self.relative_pos_emb is not None else None
        for slot, layer in enumerate(self.transformer):
            hidden = layer.forward_incremental(hidden, state.cache, slot, bias, state.memory_keys_values[slot],
                                               state.memory_mask)
        state.cache.advance(1)
        return self._finish(hidden)[:, 0]
