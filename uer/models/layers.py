"""Building blocks shared by encoders and targets: activations, BERT init, attention, FFN, layers.

LayerNorms come from :func:`uer.models.layer_norm.layer_norm` (``model.layernorm``: torch's or
the original UER-py formula).  Every LayerNorm in this package is named
``layer_norm``, ``layer_norm_1`` or ``layer_norm_2``: the UER-format mapping relies on
that to rename ``weight``/``bias`` to ``gamma``/``beta``.
"""

from __future__ import annotations

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
    place instead of concatenating.  ``length`` is the number of positions stored; it
    advances once per step, after every layer has appended (:meth:`advance`).
    """

    def __init__(self, slots: int, max_length: int):
        self.max_length = max_length
        self.length = 0
        self.keys: list[Optional[torch.Tensor]] = [None] * slots
        self.values: list[Optional[torch.Tensor]] = [None] * slots

    def append(self, slot: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` (B, heads, new, d) after the cached ones; all keys/values so far."""
        start, end = self.length, self.length + key.size(2)
        if end > self.max_length:
            raise UerError(f"the key/value cache holds {self.max_length} positions but {end} are needed; "
                           "allocate a larger cache")
        if self.keys[slot] is None:
            shape = (key.size(0), key.size(1), self.max_length, key.size(3))
            self.keys[slot] = key.new_empty(shape)
            self.values[slot] = value.new_empty(shape)
        self.keys[slot][:, :, start:end] = key
        self.values[slot][:, :, start:end] = value
        return self.keys[slot][:, :, :end], self.values[slot][:, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps


class MultiHeadedAttention(nn.Module):
    """Self-attention with one fused query/key/value projection and SDPA kernels.

    ``qkv.weight`` rows are [query; key; value], each split into heads contiguously, so
    it is exactly UER's ``linear_layers.{0,1,2}`` stacked.
    """

    def __init__(self, hidden_size: int, heads_num: int, dropout: float):
        super().__init__()
        self.heads_num = heads_num
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.final_linear = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        return self.flat_output(x, attn_mask, is_causal).view(x.shape)

    def flat_output(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        """:meth:`forward` as (B * L, H): the output projection's own tensor, not a view, so it may be
        written in place (an in-place op on a view makes autograd copy the whole gradient in backward)."""
        batch, length, hidden = x.shape
        query, key, value = self.qkv(x).view(batch, length, 3, self.heads_num, -1).permute(2, 0, 3, 1, 4).unbind(0)
        context = attention(query, key, value, attn_mask, is_causal, self.dropout if self.training else 0.0)
        return self.final_linear(context.transpose(1, 2).reshape(batch * length, hidden))

    def forward_incremental(self, x: torch.Tensor, cache: KeyValueCache, slot: int) -> torch.Tensor:
        """Causal attention of the new positions ``x`` (B, new, H) over the cached ones and themselves.

        Every position is real (no padding); new position ``i`` sees the cached positions
        and the new positions up to ``i``.  Equal to :meth:`forward` with a causal mask over
        the whole sequence, restricted to the new positions (in eval mode).
        """
        batch, length, hidden = x.shape
        query, key, value = self.qkv(x).view(batch, length, 3, self.heads_num, -1).permute(2, 0, 3, 1, 4).unbind(0)
        past = cache.length
        key, value = cache.append(slot, key, value)
        if length == 1:
            mask, is_causal = None, False  # one new query sees every stored key
        elif past == 0:
            mask, is_causal = None, True
        else:  # query i (absolute position past + i) sees keys 0 .. past + i
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        context = attention(query, key, value, mask, is_causal, self.dropout if self.training else 0.0)
        return self.final_linear(context.transpose(1, 2).reshape(batch, length, hidden))


class PositionwiseFeedForward(nn.Module):
    def __init__(self, hidden_size: int, feedforward_size: int, hidden_act: str):
        super().__init__()
        self.linear_1 = nn.Linear(hidden_size, feedforward_size)
        self.act = activation(hidden_act)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size)
        self.recompute = hidden_act in BACKWARD_KEEPS_INPUT  # see uer.models.recompute

    def forward(self, x: torch.Tensor, input_recipe: Optional[Callable[[], torch.Tensor]] = None) -> torch.Tensor:
        """``input_recipe``: rebuilds ``x`` in backward (see :func:`recompute_in_backward`) instead of keeping it."""
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


class TransformerLayer(nn.Module):
    """A transformer layer: self-attention, then feed-forward, each with a residual connection.

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
    ):
        super().__init__()
        if layernorm_positioning not in LAYERNORM_POSITIONS:
            raise UerError(f"unknown encoder.layernorm_positioning {layernorm_positioning!r}; choose one of: "
                           f"{', '.join(LAYERNORM_POSITIONS)}")
        self.pre = layernorm_positioning == "pre"
        self.self_attn = MultiHeadedAttention(hidden_size, heads_num, dropout)
        self.layer_norm_1 = layer_norm(hidden_size, layernorm_eps, layernorm)
        self.feed_forward = PositionwiseFeedForward(hidden_size, feedforward_size, hidden_act)
        self.layer_norm_2 = layer_norm(hidden_size, layernorm_eps, layernorm)
        self.dropout = Dropout(dropout)
        self.recompute = True  # see uer.models.recompute

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        # (B * L, H) inside: every linear's output is then a tensor of its own, which the
        # residual writes into in place (see MultiHeadedAttention.flat_output).
        shape = x.shape
        if self.pre:
            return self._forward_pre(x, attn_mask, is_causal).view(shape)
        summed = self._residual(x.reshape(-1, shape[-1]), self.self_attn.flat_output(x, attn_mask, is_causal))
        x = self.layer_norm_1(summed)
        # The feed-forward input is the LayerNorm's output: rebuilt in backward from the LayerNorm's input.
        out = self.feed_forward(x, partial(self.layer_norm_1, summed) if self.recompute else None)
        return self.layer_norm_2(self._residual(x, out)).view(shape)

    def _forward_pre(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        """``x + attn(ln_1(x))``, then ``+ ff(ln_2(.))``, as (B * L, H)."""
        summed = self._residual(x.reshape(-1, x.size(-1)),
                                self.self_attn.flat_output(self.layer_norm_1(x), attn_mask, is_causal))
        normed = self.layer_norm_2(summed)
        # As in post-LN: the feed-forward input is rebuilt in backward from the LayerNorm's input.
        out = self.feed_forward(normed, partial(self.layer_norm_2, summed) if self.recompute else None)
        return self._residual(summed, out)

    def forward_incremental(self, x: torch.Tensor, cache: KeyValueCache, slot: int) -> torch.Tensor:
        """:meth:`forward` under a causal mask for the new positions only, keys/values from ``cache``."""
        if self.pre:
            x = self._residual(x, self.self_attn.forward_incremental(self.layer_norm_1(x), cache, slot))
            return self._residual(x, self.feed_forward(self.layer_norm_2(x)))
        x = self.layer_norm_1(self._residual(x, self.self_attn.forward_incremental(x, cache, slot)))
        return self.layer_norm_2(self._residual(x, self.feed_forward(x)))

    def _residual(self, x: torch.Tensor, sublayer_out: torch.Tensor) -> torch.Tensor:
        """``x + dropout(sublayer_out)``, in ``sublayer_out``'s memory (a fresh tensor no backward needs)."""
        out = dropout(sublayer_out, self.dropout.p, self.training, inplace=True)
        return out.add_(x) if out.dtype == x.dtype else x + out
