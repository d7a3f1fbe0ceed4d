"""The two LayerNorm formulas a model can use (``model.layernorm``), chosen by :func:`layer_norm`.

* ``standard``: ``torch.nn.LayerNorm`` -- ``(x - mean) / sqrt(var + eps)``, biased variance;
  what Google's BERT and Hugging Face compute.
* ``uer``: the original UER-py toolkit's -- ``(x - mean) / (std + eps)`` with the *unbiased*
  standard deviation and ``eps`` added outside the square root.  Models the original
  toolkit trained (its ``.bin`` files) were trained with it; read with ``standard`` their
  hidden states differ by about 1e-2.
* ``rms``: T5's -- ``x / sqrt(mean(x^2) + eps)`` times a weight: no mean subtracted, no bias.

``standard`` and ``uer`` hold ``weight`` and ``bias`` (UER files name them ``gamma``/``beta``), so a model's
state dict has the same names and shapes whichever of the two it uses; ``rms`` holds ``weight`` alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from uer.errors import UerError

LAYER_NORMS = ("standard", "uer", "rms")
LAYERNORM_HELP = "LayerNorm formula: standard | uer | rms (T5's) (null: standard); follows model.layernorm"


class UerLayerNorm(nn.Module):
    """``weight * (x - mean) / (std + eps) + bias``, ``std`` unbiased, computed in float32."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        mean = x32.mean(dim=-1, keepdim=True)
        std = x32.std(dim=-1, keepdim=True)
        out = self.weight.float() * (x32 - mean) / (std + self.eps) + self.bias.float()
        return out.to(torch.promote_types(x.dtype, self.weight.dtype))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, unbiased std, eps outside the square root"


class RmsNorm(nn.Module):
    """``weight * x / sqrt(mean(x^2) + eps)``, the mean of squares in float32 (T5's LayerNorm)."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(dim=-1, keepdim=True)
        normed = (x.float() * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)
        return self.weight * normed

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, root mean square, no bias"


def layer_norm(size: int, eps: float, kind: Optional[str]) -> nn.Module:
    """A LayerNorm over the last ``size`` features with the ``kind`` formula (see the module docstring;
    None is ``standard``)."""
    if kind in (None, "standard"):
        return nn.LayerNorm(size, eps=eps)
    if kind == "uer":
        return UerLayerNorm(size, eps)
    if kind == "rms":
        return RmsNorm(size, eps)
    raise UerError(f"unknown model.layernorm {kind!r}; choose one of: {', '.join(LAYER_NORMS)}")
