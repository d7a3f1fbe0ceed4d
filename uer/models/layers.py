"""Building blocks shared by encoders and targets: activations, BERT init, attention, FFN, layers.

LayerNorms come from :func:`uer.models.layer_norm.layer_norm` (``model.layernorm``: torch's or
the original UER-py formula).  Every LayerNorm in this package is named
``layer_norm``, ``layer_norm_1`` or ``layer_norm_2``: the UER-format mapping relies on
that to rename ``weight``/``bias`` to ``gamma``/``beta``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer.errors import UerError
from uer.models.dropout import Dropout, attention, dropout
from uer.models.layer_norm import layer_norm
from uer.models.recompute import recompute_in_backward

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf) GELU, as in Google BERT
    "gelu_fast": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}

# Activations whose backward keeps their input (ReLU keeps its output instead).
BACKWARD_KEEPS_INPUT = frozenset({"gelu", "gelu_fast", "silu"})


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UerError(f"unknown hidden_act {name!r}; choose one of: {', '.join(sorted(ACTIVATIONS))}") from None


def init_bert_weights(module: nn.Module) -> None:
    """BERT initialisation; use with ``model.apply``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class KeyValueCache:
    """Keys and values of the positions already seen, for incremental (left-to-right) decoding.

    One slot per layer *application* (an ALBERT model applies its shared layer
    ``layers_num`` times, so it needs ``layers_num`` slots too).  Buffers of
    ``max_length`` positions are allocated on first use, so each decoding step writes in
    place instead of concatenating; with ``max_length`` None (a decoder with relative
    positions has no longest target) a full buffer is reallocated twice as long.
    ``length`` is the number of positions stored; it advances once per step, after every
    layer has appended (:meth:`advance`).
    """

    def __init__(self, slots: int, max_length: Optional[int]):
        self.max_length = max_length
        self.length = 0
        self.keys: list[Optional[torch.Tensor]] = [None] * slots
        self.values: list[Optional[torch.Tensor]] = [None] * slots

    def append(self, slot: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` (B, heads, new, d) after the cached ones; all keys/values so far."""
        start, end = self.length, self.length + key.size(2)
        if self.max_length is not None and end > self.max_length:
            raise UerError(f"the key/value cache holds {self.max_length} positions but {end} are needed; "
                           "allocate a larger cache")
        stored = self.keys[slot]
        if stored is None or stored.size(2) < end:
            room = self.max_length if self.max_length is not None else max(2 * end, 16)
            shape = (key.size(0), key.size(1), room, key.size(3))
            keys, values = key.new_empty(shape), value.new_empty(shape)
            if stored is not None:
                keys[:, :, :start], values[:, :, :start] = stored[:, :, :start], self.values[slot][:, :, :start]
            self.keys[slot], self.values[slot] = keys, values
        self.keys[slot][:, :, start:end] = key
        self.values[slot][:, :, start:end] = value
        return self.keys[slot][:, :, :end], self.values[slot][:, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of every slot, in that order (beam search).  Only the ``length`` positions stored
        are copied: the buffers hold ``max_length`` (a BART decoder's 1,024), and beam search reorders every step."""
        for buffers in (self.keys, self.values):
            for slot, stored in enumerate(buffers):
                if stored is not None:
                    kept = stored.new_empty((index.size(0), *stored.shape[1:]))
                    kept[:, :, :self.length] = stored[:, :, :self.length].index_select(0, index)
                    buffers[slot] = kept


class MultiHeadedAttention(nn.Module):
    """Multi-head attention with one fused query/key/value projection and SDPA kernels.

    ``qkv.weight`` rows are [query; key; value], each split into heads contiguously, so
    it is exactly UER's ``linear_layers.{0,1,2}`` stacked.  As cross-attention (a
    decoder's ``context_attn``) the queries come from ``x`` and the keys and values from
    the encoder's output (:meth:`memory_keys_values`, computed once per source).
    ``bias: false`` drops the projections' biases and ``scaled: false`` the
    ``1 / sqrt(head size)`` of the scores (T5, whose query weights carry it).
    """

    def __init__(self, hidden_size: int, heads_num: int, dropout: float, bias: bool = True, scaled: bool = True):
        super().__init__()
        self.heads_num = heads_num
        self.dropout = dropout
        self.scale = None if scaled else 1.0
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.final_linear = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        return self.flat_output(x, attn_mask, is_causal).view(x.shape)

    def flat_output(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool,
                    memory: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """:meth:`forward` as (B * L, H): the output projection's own tensor, not a view, so it may be
        written in place (an in-place op on a view makes autograd copy the whole gradient in backward).
        ``memory``: the keys and values to attend over (:meth:`memory_keys_values`) instead of ``x``'s own."""
        batch, length, hidden = x.shape
        if memory is None:
            query, key, value = self._heads(self.qkv(x), 3).unbind(0)
        else:
            query = self._heads(F.linear(x, self.qkv.weight[:hidden], self._bias(0, hidden)), 1)[0]
            key, value = memory
        return self._context(query, key, value, attn_mask, is_causal)

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, L_src, d) of the encoder's output ``memory``, for cross-attention."""
        hidden = memory.size(-1)
        projected = F.linear(memory, self.qkv.weight[hidden:], self._bias(hidden, 3 * hidden))
        key, value = self._heads(projected, 2).unbind(0)
        return key, value

    def _bias(self, start: int, end: int) -> Optional[torch.Tensor]:
        return self.qkv.bias[start:end] if self.qkv.bias is not None else None

    def _heads(self, projected: torch.Tensor, parts: int) -> torch.Tensor:
        """(B, L, parts * H) -> (parts, B, heads, L, d)."""
        batch, length, _ = projected.shape
        return projected.view(batch, length, parts, self.heads_num, -1).permute(2, 0, 3, 1, 4)

    def _context(self, query, key, value, attn_mask, is_causal) -> torch.Tensor:
        """Attention output through ``final_linear``, as (B * L, H)."""
        batch, _, length, _ = query.shape
        context = attention(query, key, value, attn_mask, is_causal, self.dropout if self.training else 0.0,
                            self.scale)
        return self.final_linear(context.transpose(1, 2).reshape(batch * length, -1))

    def forward_incremental(self, x: torch.Tensor, cache: KeyValueCache, slot: int,
                            position_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Causal attention of the new positions ``x`` (B, new, H) over the cached ones and themselves.

        Every position is real (no padding); new position ``i`` sees the cached positions
        and the new positions up to ``i``.  Equal to :meth:`forward` with a causal mask over
        the whole sequence, restricted to the new positions (in eval mode).  ``position_bias``
        (1, heads, new, cached + new): added to the scores (T5's relative positions).
        """
        query, key, value = self._heads(self.qkv(x), 3).unbind(0)
        past, length = cache.length, x.size(1)
        key, value = cache.append(slot, key, value)
        if length == 1:
            mask, is_causal = None, False  # one new query sees every stored key
        elif past == 0 and position_bias is None:
            mask, is_causal = None, True
        else:  # query i (absolute position past + i) sees keys 0 .. past + i
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        if position_bias is not None:
            mask = position_bias if mask is None else position_bias.masked_fill(~mask, float("-inf"))
        return self._context(query, key, value, mask, is_causal).view(x.shape)


FEEDFORWARDS = ("dense", "gated")


class PositionwiseFeedForward(nn.Module):
    """``linear_2(act(linear_1(x)))``; ``gated``: ``linear_2(act(linear_gate(x)) * linear_1(x))`` (T5 v1.1's
    gated GELU; the names are the original toolkit's); ``bias: false`` drops the biases (T5)."""

    def __init__(self, hidden_size: int, feedforward_size: int, hidden_act: str, bias: bool = True,
                 gated: bool = False):
        super().__init__()
        self.linear_gate = nn.Linear(hidden_size, feedforward_size, bias=bias) if gated else None
        self.linear_1 = nn.Linear(hidden_size, feedforward_size, bias=bias)
        self.act = activation(hidden_act)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size, bias=bias)
        self.recompute = hidden_act in BACKWARD_KEEPS_INPUT  # see uer.models.recompute

    def forward(self, x: torch.Tensor, input_recipe: Optional[Callable[[], torch.Tensor]] = None) -> torch.Tensor:
        """``input_recipe``: rebuilds ``x`` in backward (see :func:`recompute_in_backward`) instead of keeping it."""
        if self.linear_gate is not None:
            return self.linear_2(self.act(self.linear_gate(x)) * self.linear_1(x))
        if input_recipe is None:
            hidden = self.linear_1(x)
        else:
            with recompute_in_backward(x, input_recipe):
                hidden = self.linear_1(x)
        activated = self.act(hidden)
        if not self.recompute:
            return self.linear_2(activated)
        # GELU's backward keeps ``hidden``: linear_2 need not keep ``activated`` too.
        with recompute_in_backward(activated, partial(_activate_again, self.act, hidden, activated.dtype)):
            return self.linear_2(activated)


def _activate_again(act: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
    return act(hidden.to(dtype))


LAYERNORM_POSITIONS = ("post", "pre")


def check_positioning(positioning: str, node: str) -> str:
    if positioning not in LAYERNORM_POSITIONS:
        raise UerError(f"unknown {node}.layernorm_positioning {positioning!r}; choose one of: "
                       f"{', '.join(LAYERNORM_POSITIONS)}")
    return positioning


def check_layer_choices(cfg, node: str) -> None:
    """The named options of ``node``'s transformer layers are known ones (checked before any work; a config
    without them, another kind of encoder, passes)."""
    if hasattr(cfg, "layernorm_positioning"):
        check_positioning(cfg.layernorm_positioning, node)
    if hasattr(cfg, "feedforward") and cfg.feedforward not in FEEDFORWARDS:
        raise UerError(f"unknown {node}.feedforward {cfg.feedforward!r}; choose one of: {', '.join(FEEDFORWARDS)}")


def feed_forward(hidden_size: int, feedforward_size: int, hidden_act: str, bias: bool, kind: str,
                 node: str) -> PositionwiseFeedForward:
    """The ``kind`` (``dense`` | ``gated``) feed-forward part of a layer of ``node`` (for the message)."""
    if kind not in FEEDFORWARDS:
        raise UerError(f"unknown {node}.feedforward {kind!r}; choose one of: {', '.join(FEEDFORWARDS)}")
    return PositionwiseFeedForward(hidden_size, feedforward_size, hidden_act, bias, gated=kind == "gated")


class RelativePositionBias(nn.Module):
    """T5's relative position bias: one learned scalar per head and bucket of the distance key - query, added to
    the attention scores (``relative_attention_bias``: buckets x heads).

    Half the buckets count exact distances, the rest grow logarithmically up to ``max_distance``
    (farther is the last bucket); ``bidirectional`` (an encoder) splits the buckets between keys before
    and after the query, a causal decoder uses all of them for keys before it.
    """

    def __init__(self, heads_num: int, buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(buckets, heads_num)

    def bucket(self, distance: torch.Tensor) -> torch.Tensor:
        """Bucket of each ``distance`` = key position - query position."""
        buckets, offset = self.buckets, torch.zeros_like(distance)
        if self.bidirectional:
            buckets //= 2
            offset = (distance > 0).long() * buckets
            distance = distance.abs()
        else:
            distance = (-distance).clamp(min=0)
        exact = buckets // 2
        far = exact + (torch.log(distance.float() / exact) / math.log(self.max_distance / exact)
                       * (buckets - exact)).long()
        far = far.clamp(max=buckets - 1)
        return offset + torch.where(distance < exact, distance, far)

    def forward(self, queries: int, keys: int, first_query: int = 0) -> torch.Tensor:
        """(1, heads, queries, keys) for queries at positions ``first_query ..`` over keys at ``0 .. keys - 1``."""
        device = self.relative_attention_bias.weight.device
        query = torch.arange(first_query, first_query + queries, device=device)[:, None]
        key = torch.arange(keys, device=device)[None, :]
        return self.relative_attention_bias(self.bucket(key - query)).permute(2, 0, 1).unsqueeze(0)


class TransformerLayer(nn.Module):
    """A transformer layer: self-attention, then feed-forward, each with a residual connection.

    ``bias``, ``feedforward`` (``dense`` | ``gated``) and ``scaled`` (see :class:`MultiHeadedAttention`) are T5's
    options; a relative position bias reaches the layer as a float ``attn_mask``.

    ``layernorm_positioning``: ``post`` (BERT / UER-py) normalises each residual sum
    (``layer_norm_1`` after attention, ``layer_norm_2`` after the feed-forward); ``pre``
    (GPT-2) normalises each sub-layer's input instead (``layer_norm_1`` before attention,
    ``layer_norm_2`` before the feed-forward) and leaves the sums as they are -- the encoder
    then ends with a LayerNorm of its own.
    """

    def __init__(
        self,
        hidden_size: int,
        feedforward_size: int,
        heads_num: int,
        dropout: float,
        hidden_act: str,
        layernorm_eps: float,
        layernorm: Optional[str] = None,
        layernorm_positioning: str = "post",
        bias: bool = True,
        feedforward: str = "dense",
        scaled: bool = True,
    ):
        super().__init__()
        self.pre = check_positioning(layernorm_positioning, "encoder") == "pre"
        self.self_attn = MultiHeadedAttention(hidden_size, heads_num, dropout, bias, scaled)
        self.layer_norm_1 = layer_norm(hidden_size, layernorm_eps, layernorm)
        self.feed_forward = feed_forward(hidden_size, feedforward_size, hidden_act, bias, feedforward, "encoder")
        self.layer_norm_2 = layer_norm(hidden_size, layernorm_eps, layernorm)
        self.dropout = Dropout(dropout)
        self.recompute = True  # see uer.models.recompute

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        # (B * L, H) inside: every linear's output is then a tensor of its own, which the
        # residual writes into in place (see MultiHeadedAttention.flat_output).  What the layer
        # returns is (B, L, H) made by its last operation, not a view of a (B * L, H) tensor: FSDP2
        # runs the backward of a sharded layer from a hook on its output, which an in-place
        # operation on a view of it would drop.
        shape = x.shape
        if self.pre:
            return self._forward_pre(x, attn_mask, is_causal)
        summed = self._residual(x.reshape(-1, shape[-1]), self.self_attn.flat_output(x, attn_mask, is_causal))
        x = self.layer_norm_1(summed)
        # The feed-forward input is the LayerNorm's output: rebuilt in backward from the LayerNorm's input.
        out = self.feed_forward(x, partial(self.layer_norm_1, summed) if self.recompute else None)
        return self.layer_norm_2(self._residual(x, out).view(shape))

    def _forward_pre(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        """``x + attn(ln_1(x))``, then ``+ ff(ln_2(.))``, as (B * L, H) until the last sum, a new (B, L, H)."""
        shape = x.shape
        summed = self._residual(x.reshape(-1, shape[-1]),
                                self.self_attn.flat_output(self.layer_norm_1(x), attn_mask, is_causal))
        normed = self.layer_norm_2(summed)
        # As in post-LN: the feed-forward input is rebuilt in backward from the LayerNorm's input.
        out = self.feed_forward(normed, partial(self.layer_norm_2, summed) if self.recompute else None)
        return residual(summed.view(shape), out.view(shape), self.dropout.p, self.training, new=True)

    def forward_incremental(self, x: torch.Tensor, cache: KeyValueCache, slot: int,
                            position_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`forward` under a causal mask for the new positions only, keys/values from ``cache``."""
        if self.pre:
            x = self._residual(x, self.self_attn.forward_incremental(self.layer_norm_1(x), cache, slot, position_bias))
            return self._residual(x, self.feed_forward(self.layer_norm_2(x)))
        x = self.layer_norm_1(self._residual(x, self.self_attn.forward_incremental(x, cache, slot, position_bias)))
        return self.layer_norm_2(self._residual(x, self.feed_forward(x)))

    def _residual(self, x: torch.Tensor, sublayer_out: torch.Tensor) -> torch.Tensor:
        return residual(x, sublayer_out, self.dropout.p, self.training)


def residual(x: torch.Tensor, sublayer_out: torch.Tensor, p: float, training: bool, *,
             new: bool = False) -> torch.Tensor:
    """``x + dropout(sublayer_out)``, in ``sublayer_out``'s memory (a fresh tensor no backward needs); with
    ``new``, in a tensor of its own, the same sum (a layer's output, which must not be a view).

    Under autocast the sub-layer's output is bf16 and ``x`` (a LayerNorm's output) fp32: the sum is
    taken in fp32 after converting the bf16 side, as ``x + out`` does inside, but torch's CPU add of
    two dtypes takes nearly twice as long as the conversion and an add of one dtype."""
    out = dropout(sublayer_out, p, training, inplace=True)
    if out.dtype == x.dtype:
        return x + out if new else out.add_(x)
    wide = torch.promote_types(x.dtype, out.dtype)
    return out.to(wide).add_(x.to(wide))


def recipes_off(module: nn.Module) -> None:
    """Switch off the recompute recipes of ``module``'s layers (:mod:`uer.models.recompute`) for activation
    checkpointing, under which they would keep tensors that checkpointing would otherwise drop."""
    for layer in module.modules():
        if isinstance(layer, (PositionwiseFeedForward, TransformerLayer)):
            layer.recompute = False
