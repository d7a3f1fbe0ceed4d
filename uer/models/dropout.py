"""Dropout and attention whose random masks are cheap on CPU.

On CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``: one call of the (serial)
generator per element at twice the cost of ``torch.rand``.  At ``size=base`` those draws
were the largest cost after the matmuls, and with two threads they do not get faster.
Here one 64-bit draw decides four elements (:func:`keep_mask`): each is dropped with
probability ``p`` rounded to a multiple of 2^-16 (0.1 -> 0.1000061) and the kept ones are
scaled by ``1 / (1 - that rate)``, so the expectation is exactly the input's.  The mask is
one byte an element (uint8, 1 = kept), kept for backward, and applied by multiplying with
it in the tensor's dtype: torch's CPU kernels for boolean tensors (``masked_fill``, ``<``,
``where``) run element by element, several times slower than a multiplication, so no
boolean tensor is made or read on the way (the integer clamp that makes the mask and the
multiplications are vectorized).  ``x * 1 * scale`` and ``x * 0`` are what filling with 0
and scaling gave, so results are the same.

``scaled_dot_product_attention`` with ``dropout_p > 0`` on CPU falls back to its math
path, which draws the attention-probability mask with ``bernoulli_`` as well, and
autograd keeps the probabilities for backward.  :func:`attention` runs the same math
there with the cheaper mask, and keeps only q, k, v and the one-byte mask: backward
recomputes the probabilities.  Elsewhere (CUDA, or no dropout) SDPA's fused kernels run,
as they should.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool, inplace: bool = False) -> torch.Tensor:
    """``F.dropout``, with the cheaper mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or torch.compiler.is_compiling():  # compiled: the compiler fuses it
        return F.dropout(x, p, training=True, inplace=inplace)
    return _Dropout.apply(x, p, inplace)


class _Dropout(torch.autograd.Function):
    """``x * keep * kept_scale(p)``, keeping only the one-byte mask for backward (autograd's own multiplication
    would keep the mask in ``x``'s dtype, four times the memory in fp32)."""

    @staticmethod
    def forward(ctx, x, p, inplace):
        keep = keep_mask(x.shape, p)
        ctx.save_for_backward(keep)
        ctx.p = p
        if inplace:
            ctx.mark_dirty(x)
            return x.mul_(keep.to(x.dtype)).mul_(kept_scale(p))
        return (x * keep.to(x.dtype)).mul_(kept_scale(p))

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return (grad * keep.to(grad.dtype)).mul_(kept_scale(ctx.p)), None, None


def effective_rate(p: float) -> float:
    """The rate :func:`keep_mask` drops at: ``p`` rounded to a multiple of 2^-16, below 1."""
    return min(round(p * _LEVELS), _LEVELS - 1) / _LEVELS


def kept_scale(p: float) -> float:
    """What kept elements are multiplied by: ``1 / (1 - effective_rate(p))``, so the expectation is unchanged."""
    return 1.0 / (1.0 - effective_rate(p))


def keep_mask(shape: Sequence[int], p: float) -> torch.Tensor:
    """A uint8 tensor of ``shape``, 0 (drop) with probability :func:`effective_rate` ``(p)``, else 1.

    One 64-bit draw of the CPU generator gives four 16-bit uniform lanes, each compared with
    the threshold: a quarter of the generator calls ``rand(shape) < p`` makes, and those
    calls are serial.  The comparison is an integer clamp to [threshold - 1, threshold]
    minus (threshold - 1): 0 below the threshold, 1 from it on, vectorized where ``<``
    (a boolean result) is not.
    """
    numel = math.prod(shape)
    threshold = round(effective_rate(p) * _LEVELS) - _LEVELS // 2  # a lane below it drops its element
    if threshold == -_LEVELS // 2:  # a rate of 0 (p under 2^-17): every lane is at or above it
        return torch.ones(shape, dtype=torch.uint8)
    words = torch.empty(-(-numel // 4), dtype=torch.int64).random_(-2**63, None)  # all 64 bits random
    lanes = words.view(torch.int16)[:numel]  # uniform over [-2^15, 2^15)
    return lanes.clamp(threshold - 1, threshold).sub_(threshold - 1).to(torch.uint8).view(shape)


_LEVELS = 1 << 16


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same constructor and ``p``), using :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: Optional[torch.Tensor],
    is_causal: bool,
    dropout_p: float,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` semantics (boolean ``attn_mask``: True = may attend; a float one is
    added to the scores, e.g. T5's relative position bias; ``scale`` None: ``1 / sqrt(head size)``).

    ``query``, ``key`` and ``value`` share their batch dimensions (no broadcasting), and
    every query must see at least one key (the encoders' masks guarantee it).
    """
    if dropout_p == 0.0 or query.device.type != "cpu" or torch.compiler.is_compiling():
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale)
    if is_causal:
        attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).tril()
    if torch.is_autocast_enabled("cpu"):  # matmuls in the autocast dtype, as torch.matmul would be
        dtype = torch.get_autocast_dtype("cpu")
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # added as 0 / -inf: the same scores as filling with -inf, but a vectorized add (a boolean fill is not)
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype).masked_fill_(~attn_mask, float("-inf"))
    with torch.autocast("cpu", enabled=False):
        return _DroppedOutAttention.apply(query, key, value, attn_mask, dropout_p,
                                          query.size(-1) ** -0.5 if scale is None else scale)


class _DroppedOutAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d), masked) -> dropout -> x v, keeping only q, k, v and the mask for backward.

    Autograd would also keep the probabilities (B x heads x L x L floats: at size=base,
    batch 16, length 128, 12 MB a layer, two thirds of q, k and v together); backward
    recomputes them from q and k instead, one small matmul and a softmax per layer.

    Probabilities are in the inputs' dtype: under bf16 autocast, bf16.  torch's CPU
    softmax computes a bf16 input in fp32 and rounds its result once, so forward gives
    exactly what an fp32 softmax cast to bf16 for the next matmul gives, with half the
    memory traffic and no casts.  Scales (1 / sqrt(d), :func:`kept_scale`) ride in the matmuls
    (``baddbmm``'s alpha), not in passes of their own.
    """

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, p, score_scale):
        *batch, length, _ = query.shape
        q, k, v = (t.reshape(-1, *t.shape[-2:]) for t in (query, key, value))
        ctx.attn_mask, ctx.p, ctx.batch, ctx.score_scale = attn_mask, p, batch, score_scale
        probs = torch.softmax(_scores(q, k, attn_mask, batch, score_scale), dim=-1)
        keep = keep_mask(probs.shape, p)
        ctx.save_for_backward(q, k, v, keep)
        out = _scaled_bmm(probs.mul_(keep.to(probs.dtype)), v, kept_scale(p))
        return out.view(*batch, length, v.size(-1))

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, keep = ctx.saved_tensors
        scale = kept_scale(ctx.p)
        grad_out = grad_out.reshape(-1, *grad_out.shape[-2:]).to(v.dtype)
        keep = keep.to(v.dtype)
        grad_probs = torch.bmm(grad_out, v.transpose(1, 2)).mul_(keep)
        # softmax's own backward (one fused pass) through autograd, on scores recomputed from q and k
        with torch.enable_grad():
            scores = _scores(q, k, ctx.attn_mask, ctx.batch, ctx.score_scale).requires_grad_()
            probs = torch.softmax(scores, dim=-1)
            (grad_scores,) = torch.autograd.grad(probs, scores, grad_probs)
        # d scores / d q = k * score_scale: that scale and the dropout's ride in the matmuls
        both = scale * ctx.score_scale
        grad_query = _scaled_bmm(grad_scores, k, both)
        grad_key = _scaled_bmm(grad_scores.transpose(1, 2), q, both)
        grad_value = _scaled_bmm(probs.detach().mul_(keep).transpose(1, 2), grad_out, scale)
        shapes = [(*ctx.batch, *t.shape[-2:]) for t in (q, k, v)]
        return (grad_query.view(shapes[0]), grad_key.view(shapes[1]), grad_value.view(shapes[2]), None, None, None)


def _scaled_bmm(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * (a @ b)`` for batches of matrices, the scale applied inside the matmul."""
    # baddbmm with beta=0 ignores its input: an expanded 1-element tensor, never read or allocated
    unused = a.new_empty(1, 1, 1).expand(a.size(0), a.size(1), b.size(2))
    return torch.baddbmm(unused, a, b, beta=0.0, alpha=alpha)


def _scores(q: torch.Tensor, k: torch.Tensor, attn_mask: Optional[torch.Tensor], batch,
            score_scale: float) -> torch.Tensor:
    """q k^T * score_scale plus the float ``attn_mask`` (0 / -inf from a boolean one, or a bias): (N, Lq, Lk) from
    q (N, Lq, d) and k (N, Lk, d)."""
    scores = _scaled_bmm(q, k.transpose(1, 2), score_scale)
    if attn_mask is not None:
        scores.view(*batch, *scores.shape[-2:]).add_(attn_mask.to(scores.dtype))
    return scores
