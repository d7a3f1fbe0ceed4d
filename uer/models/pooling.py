"""Sequence -> vector pooling shared by sentence-level targets, task heads and tools."""

from __future__ import annotations

import torch

from uer.errors import UerError

POOLINGS = ("first", "mean", "max", "last")


def check_pooling(pooling: str, key: str) -> str:
    """``pooling`` if it is known; else a UerError naming the config ``key``."""
    if pooling not in POOLINGS:
        raise UerError(f"{key}={pooling} is not known; choose one of: {', '.join(POOLINGS)}")
    return pooling


def pool(hidden: torch.Tensor, seg: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, H) -> (B, H) over the real positions (``seg != 0``) of right-padded rows."""
    if pooling == "first":
        return hidden[:, 0]
    keep = (seg != 0).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(~keep, torch.finfo(hidden.dtype).min).max(dim=1).values
    if pooling == "last":
        last = (seg != 0).sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    check_pooling(pooling, "pooling")
