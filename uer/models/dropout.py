"""Dropout and attention whose random masks are cheap on CPU.

On CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which costs about twice
``torch.rand`` per element, and the draws are serial (one generator), so at ``size=base``
they were the largest cost after the matmuls (about 6% of a pre-training step).  Here a
CPU mask is ``rand >= p``: the same distribution (keep with probability ``1 - p``, scale
kept values by ``1 / (1 - p)``), half the time, and a one-byte mask kept for backward.

``scaled_dot_product_attention`` with ``dropout_p > 0`` on CPU falls back to its math
path, which draws the attention-probability mask with ``bernoulli_`` as well;
:func:`attention` runs the same math with the cheaper mask there.  Elsewhere (CUDA, or no
dropout) SDPA's fused kernels run, as they should.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer.models.recompute import recompute_in_backward


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``, with the cheaper mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    return _apply_mask(x, _keep_mask(x.shape, p), p)


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
    recompute: bool = True,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` semantics (boolean ``attn_mask``: True = may attend).

    Every query must see at least one key (the encoders' masks guarantee it).  With
    ``recompute`` the dropped-out probabilities are rebuilt in backward instead of kept.
    """
    if dropout_p == 0.0 or query.device.type != "cpu":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal)
    scores = torch.matmul(query * query.size(-1) ** -0.5, key.transpose(-2, -1))
    if is_causal:
        attn_mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).tril()
    if attn_mask is not None:
        bias = torch.zeros(attn_mask.shape, dtype=scores.dtype).masked_fill_(~attn_mask, float("-inf"))
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)  # in fp32 under bf16/fp16 autocast too
    keep = _keep_mask(probs.shape, dropout_p)
    dropped = _apply_mask(probs, keep, dropout_p).to(value.dtype)
    if not recompute:
        return torch.matmul(dropped, value)
    # Softmax keeps probs and the mask is kept: save the dropped probabilities as a recipe.
    with recompute_in_backward(dropped, partial(_dropped_again, probs, keep, dropout_p, value.dtype)):
        return torch.matmul(dropped, value)


def _dropped_again(probs: torch.Tensor, keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    return _apply_mask(probs, keep, p).to(dtype)
