"""Encoders: embeddings (B, L, emb_size) + segments -> hidden states (B, L, hidden_size).

Every encoder declares what it is (see :mod:`uer.models.context`): ``context(cfg)``, what
its output at position ``i`` has seen (causal, bidirectional, or separate
forward+backward stacks); ``needs_positions``, whether it needs an embedding with
positions; and ``variants``, the overrides that change its context (for the
combination table, :mod:`uer.combinations`).  Its schema lists exactly the keys it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import II, MISSING
from torch import nn
from torch.utils.checkpoint import checkpoint

from uer.config.fields import FRACTION, POSITIVE, at_least, setting
from uer.errors import UerError
from uer.models.context import BIDIRECTIONAL, CAUSAL, PREFIX
from uer.models.layer_norm import LAYERNORM_HELP, layer_norm
from uer.models.layers import KeyValueCache, RelativePositionBias, TransformerLayer, recipes_off
from uer.registry import Registry

ENCODERS: Registry = Registry("encoder", group="encoder")

MASKS = ("fully_visible", "causal", "causal_with_prefix")


@dataclass
class EncoderConfig:
    """Keys every encoder reads."""

    type: str = setting(MISSING, "the encoder class: transformer | attn | synt | lstm | gru | bilstm | bigru | cnn | "
                                 "gatedcnn | rcnn | crnn (pick with encoder=)")
    hidden_size: int = setting(II("model.hidden_size"), "encoder width", bounds=at_least(1))
    layers_num: int = setting(II("model.layers_num"), "encoder layers", bounds=at_least(1))
    dropout: float = setting(II("model.dropout"), "dropout probability inside the encoder", tunable=True,
                             bounds=FRACTION)


@dataclass
class MaskedAttentionConfig(EncoderConfig):
    heads_num: int = setting(II("model.heads_num"), "attention heads", bounds=at_least(1))
    mask: str = setting("fully_visible", "fully_visible (bidirectional) | causal (left to right) | "
                                         "causal_with_prefix (bidirectional over segment 1, causal after it: "
                                         "target=prefixlm)")


@dataclass
class TransformerLayersConfig:
    """What a stack of transformer layers reads besides its sizes: shared by the encoder and the decoder."""

    feedforward_size: int = setting(II("model.feedforward_size"), "feed-forward width", bounds=at_least(1))
    hidden_act: str = setting(II("model.hidden_act"), "feed-forward activation: gelu | gelu_fast | relu | silu")
    layernorm_eps: float = setting(1e-6, "LayerNorm epsilon", bounds=POSITIVE)
    layernorm: Optional[str] = setting(None, LAYERNORM_HELP)
    layernorm_positioning: str = setting(
        "post", "post: a LayerNorm after each residual sum (BERT, UER's GPT, BART) | pre: before each sub-layer, and "
                "one after the last layer (GPT-2, T5; the original's --layernorm_positioning)")
    feedforward: str = setting("dense", "dense: linear, activation, linear | gated: act(linear_gate x) * linear_1 x, "
                                        "then linear_2 (T5 v1.1's gated GELU)")
    bias: bool = setting(True, "biases on the attention and feed-forward projections (T5 has none)")
    scaled_attention: bool = setting(True, "divide attention scores by sqrt(head size); false: T5, whose query "
                                           "weights carry that scale")
    relative_position_buckets: int = setting(
        0, "T5's relative position bias: buckets of the key-query distance, one learned scalar per head each, "
           "added to the scores of every layer (the embedding then needs no positions); 0 = none",
        bounds=at_least(0))
    relative_max_distance: int = setting(128, "relative_position_buckets: distances from this on share the last "
                                              "bucket", bounds=at_least(1))


@dataclass
class TransformerEncoderConfig(TransformerLayersConfig, MaskedAttentionConfig):
    """``encoder=bert`` / ``gpt``: transformer layers (post-LN unless ``layernorm_positioning: pre``)."""

    parameter_sharing: bool = setting(II("model.parameter_sharing"), "one layer shared across the stack (ALBERT)")


def mask_context(cfg) -> str:
    """Context of an attention encoder from its ``mask``."""
    return {"causal": CAUSAL, "causal_with_prefix": PREFIX}.get(cfg.mask, BIDIRECTIONAL)


def unpadded(keep: torch.Tensor) -> bool:
    """True when ``keep`` (True at real tokens) has no padding, so attention can run without a mask.  Compiled,
    always False: the graph is then the same for every batch (reading the values would break it in two)."""
    return not torch.compiler.is_compiling() and bool(keep.all())


def attention_mask(seg: torch.Tensor, causal: bool, prefix: bool = False) -> tuple[Optional[torch.Tensor], bool]:
    """``(attn_mask, is_causal)`` for SDPA from segment ids (0 = padding).

    ``prefix`` (``mask: causal_with_prefix``): every query also sees the keys of segment 1, so the
    prefix is read both ways and what follows it left to right (the prefix comes first, so a
    prefix query sees the prefix alone).

    Without padding no mask tensor is built, so the fused kernels can run.  A query that
    would see no key at all (a fully padded row, or left padding under a causal mask)
    makes SDPA return NaN; such queries are padding, so they are let see every key
    instead.  Real queries never see padded keys, so nothing leaks into real positions.
    """
    keep = seg != 0
    if not prefix and unpadded(keep):
        return None, causal
    mask = keep[:, None, None, :]  # (B, 1, 1, L): key padding
    if causal or prefix:
        length = seg.size(1)
        lower = torch.ones(length, length, dtype=torch.bool, device=seg.device).tril()
        mask = mask & (lower | (seg == 1)[:, None, None, :]) if prefix else mask & lower
    return mask | ~mask.any(dim=-1, keepdim=True), False


def relative_position_bias(cfg: TransformerLayersConfig, bidirectional: bool) -> Optional[RelativePositionBias]:
    """The stack's relative position bias (one for all its layers, as T5's), None without one."""
    buckets, max_distance = cfg.relative_position_buckets, cfg.relative_max_distance
    if not buckets:
        return None
    exact = buckets // (4 if bidirectional else 2)
    if not exact or max_distance <= exact:
        raise UerError(f"relative_position_buckets={buckets} with relative_max_distance={max_distance}: half the "
                       "buckets (a quarter, bidirectional) count exact distances, so there must be some and "
                       "relative_max_distance must exceed them")
    return RelativePositionBias(cfg.heads_num, buckets, max_distance, bidirectional)


def biased_mask(bias: torch.Tensor, attn_mask: Optional[torch.Tensor],
                is_causal: bool) -> tuple[torch.Tensor, bool]:
    """A float mask: ``bias`` (1, heads, Lq, Lk), -inf where the boolean ``attn_mask`` (or ``is_causal``)
    hides a key."""
    if is_causal:
        attn_mask = torch.ones(bias.shape[-2:], dtype=torch.bool, device=bias.device).tril()
    return (bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))), False


@ENCODERS.register("transformer", config=TransformerEncoderConfig)
class TransformerEncoder(nn.Module):
    """A stack of transformer layers (BERT, GPT with ``mask: causal``, ALBERT).

    ALBERT: with ``parameter_sharing`` one layer (``transformer``) is applied
    ``layers_num`` times; when ``emb_size != hidden_size`` a ``linear`` projection
    owned by the encoder maps embeddings to the hidden size first (ALBERT, ELECTRA).
    With ``layernorm_positioning: pre`` (GPT-2) each layer normalises its sub-layers'
    inputs and the stack ends with a LayerNorm of its own (``layer_norm``).
    """

    variants = ("encoder.mask=causal_with_prefix",)  # bert and gpt (causal) are separate options (conf/encoder/)
    context = staticmethod(mask_context)

    @staticmethod
    def needs_positions(cfg) -> bool:
        """Order-blind, unless relative positions bias its attention (T5)."""
        return not cfg.relative_position_buckets

    def __init__(self, cfg: TransformerEncoderConfig, emb_size: int):
        super().__init__()
        if cfg.mask not in MASKS:
            raise UerError(f"unknown encoder.mask {cfg.mask!r}; choose one of: {', '.join(MASKS)}")
        if cfg.hidden_size % cfg.heads_num:
            raise UerError(f"hidden_size {cfg.hidden_size} is not divisible by heads_num {cfg.heads_num}")
        self.hidden_size = cfg.hidden_size
        self.layers_num = cfg.layers_num
        self.causal = cfg.mask == "causal"
        self.prefix = cfg.mask == "causal_with_prefix"
        self.parameter_sharing = bool(cfg.parameter_sharing)
        self.linear = nn.Linear(emb_size, cfg.hidden_size) if emb_size != cfg.hidden_size else None

        def make_layer() -> TransformerLayer:
            return TransformerLayer(
                cfg.hidden_size, cfg.feedforward_size, cfg.heads_num, cfg.dropout, cfg.hidden_act, cfg.layernorm_eps,
                cfg.layernorm, cfg.layernorm_positioning, cfg.bias, cfg.feedforward, cfg.scaled_attention,
            )

        if self.parameter_sharing:
            self.transformer = make_layer()
        else:
            self.transformer = nn.ModuleList(make_layer() for _ in range(cfg.layers_num))
        # Pre-LN: the sums leave the last layer unnormalised (the original's final encoder.layer_norm).
        self.layer_norm = layer_norm(cfg.hidden_size, cfg.layernorm_eps, cfg.layernorm) \
            if cfg.layernorm_positioning == "pre" else None
        self.relative_pos_emb = relative_position_bias(cfg, bidirectional=not self.causal)
        self.activation_checkpointing = False

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(emb) if self.linear is not None else emb
        attn_mask, is_causal = attention_mask(seg, self.causal, self.prefix)
        if self.relative_pos_emb is not None:
            attn_mask, is_causal = biased_mask(self.relative_pos_emb(seg.size(1), seg.size(1)), attn_mask, is_causal)
        layers = [self.transformer] * self.layers_num if self.parameter_sharing else self.transformer
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in layers:
            if recompute:  # the dropout masks are drawn again from the saved RNG state: same as without
                hidden = checkpoint(layer, hidden, attn_mask, is_causal, use_reentrant=False)
            else:
                hidden = layer(hidden, attn_mask, is_causal)
        return self.layer_norm(hidden) if self.layer_norm is not None else hidden

    def enable_activation_checkpointing(self) -> None:
        """Keep only each layer's input for backward and run the layer again there
        (hardware.activation_checkpointing: about a third more compute, a fraction of the memory)."""
        self.activation_checkpointing = True
        recipes_off(self)

    def new_cache(self, max_length: int) -> KeyValueCache:
        """An empty key/value cache for :meth:`forward_incremental`, room for ``max_length`` positions."""
        return KeyValueCache(self.layers_num, max_length)

    def forward_incremental(self, emb: torch.Tensor, cache: KeyValueCache) -> torch.Tensor:
        """Hidden states of new positions given the earlier ones' keys/values (causal encoders only).

        ``emb`` (B, new, emb_size) are the embeddings of the positions after the
        ``cache.length`` already encoded; none of them is padding.  The result equals
        :meth:`forward`'s last ``new`` positions on the whole sequence (eval mode), at the
        cost of the new positions alone.  The cache is advanced past them.
        """
        if not self.causal:
            raise UerError("incremental decoding needs a causal encoder (encoder.mask=causal, e.g. encoder=gpt); "
                           "a bidirectional encoder must re-encode the whole sequence")
        hidden = self.linear(emb) if self.linear is not None else emb
        layers = [self.transformer] * self.layers_num if self.parameter_sharing else self.transformer
        bias = None
        if self.relative_pos_emb is not None:
            bias = self.relative_pos_emb(emb.size(1), cache.length + emb.size(1), cache.length)
        for slot, layer in enumerate(layers):
            hidden = layer.forward_incremental(hidden, cache, slot, bias)
        cache.advance(emb.size(1))
        return self.layer_norm(hidden) if self.layer_norm is not None else hidden
