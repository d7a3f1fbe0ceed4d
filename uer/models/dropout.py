"""Dropout and attention whose random masks are cheap on CPU.

On CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which costs about twice
``torch.rand`` per element, and the draws are serial (one generator), so at ``size=base``
they were the largest cost after the matmuls (about 6% of a pre-training step).  Here a
CPU mask is ``rand >= p``: the same distribution (keep with probability ``1 - p``, scale
kept values by ``1 / (1 - p)``), half the time, and a one-byte mask kept for backward.

``scaled_dot_product_attention`` with ``dropout_p > 0`` on CPU falls back to its math
path, which draws the attention-probability mask with ``bernoulli_`` as well, and
autograd keeps the probabilities for backward.  :func:`attention` runs the same math
there with the cheaper mask, and keeps only q, k, v and the one-byte mask: backward
recomputes the probabilities.  Elsewhere (CUDA, or no dropout) SDPA's fused kernels run,
as they should.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool, inplace: bool = False) -> torch.Tensor:
    """``F.dropout``, with the cheaper mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True, inplace=inplace)
    keep = _keep_mask(x.shape, p)
    if inplace:
        return x.mul_(keep).mul_(1.0 / (1.0 - p))
    return _apply_mask(x, keep, p)


def _keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    return torch.rand(shape, dtype=torch.float32) >= p


def _apply_mask(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    return torch.where(keep, x, 0.0).mul_(1.0 / (1.0 - p))


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
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` semantics (boolean ``attn_mask``: True = may attend).

    ``query``, ``key`` and ``value`` share their batch dimensions (no broadcasting), and
    every query must see at least one key (the encoders' masks guarantee it).
    """
    if dropout_p == 0.0 or query.device.type != "cpu":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal)
    if is_causal:
        attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).tril()
    if torch.is_autocast_enabled("cpu"):  # matmuls in the autocast dtype, as torch.matmul would be
        dtype = torch.get_autocast_dtype("cpu")
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    with torch.autocast("cpu", enabled=False):
        return _DroppedOutAttention.apply(query, key, value, attn_mask, dropout_p)


class _DroppedOutAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d), masked) -> dropout -> x v, keeping only q, k, v and the mask for backward.

    Autograd would also keep the probabilities (B x heads x L x L floats: at size=base,
    batch 16, length 128, 12 MB a layer, two thirds of q, k and v together); backward
    recomputes them from q and k instead, one small matmul and a softmax per layer.  The
    softmax runs in fp32 under bf16 autocast too.
    """

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, p):
        *batch, length, _ = query.shape
        q, k, v = (t.reshape(-1, *t.shape[-2:]) for t in (query, key, value))
        ctx.attn_mask, ctx.p, ctx.batch = attn_mask, p, batch
        probs = _probabilities(q, k, attn_mask, batch)
        keep = _keep_mask(probs.shape, p)
        ctx.save_for_backward(q, k, v, keep)
        # probs are not kept: dropped in place; the 1 / (1 - p) scale goes on the smaller output
        out = torch.bmm(probs.mul_(keep).to(v.dtype), v).mul_(1.0 / (1.0 - p))
        return out.view(*batch, length, v.size(-1))

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, keep = ctx.saved_tensors
        scale = 1.0 / (1.0 - ctx.p)
        probs = _probabilities(q, k, ctx.attn_mask, ctx.batch)
        grad_out = grad_out.reshape(-1, *grad_out.shape[-2:]).to(v.dtype)
        grad = torch.bmm(grad_out, v.transpose(1, 2)).float().mul_(keep)
        # softmax backward, probs * (grad - sum(grad * probs)), in one fused pass; then both scales at once
        grad = torch._softmax_backward_data(grad, probs, -1, torch.float32)
        grad = grad.mul_(scale * q.size(-1) ** -0.5).to(q.dtype)
        grad_query, grad_key = torch.bmm(grad, k), torch.bmm(grad.transpose(1, 2), q)
        grad_value = torch.bmm(probs.mul_(keep).to(v.dtype).transpose(1, 2), grad_out).mul_(scale)
        shapes = [(*ctx.batch, *t.shape[-2:]) for t in (q, k, v)]
        return (grad_query.view(shapes[0]), grad_key.view(shapes[1]), grad_value.view(shapes[2]), None, None)


def _probabilities(q: torch.Tensor, k: torch.Tensor, attn_mask: Optional[torch.Tensor], batch) -> torch.Tensor:
    """Attention probabilities (N, Lq, Lk) in fp32, from q (N, Lq, d) and k (N, Lk, d)."""
    # the 1 / sqrt(d) scale inside the matmul (baddbmm's alpha; beta=0 ignores the input)
    scores = torch.baddbmm(q.new_empty(1, 1, 1).expand(q.size(0), q.size(1), k.size(1)), q, k.transpose(1, 2),
                           beta=0.0, alpha=q.size(-1) ** -0.5)
    if attn_mask is not None:
        scores.view(*batch, *scores.shape[-2:]).masked_fill_(~attn_mask, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32)
