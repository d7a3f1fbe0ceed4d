"""Save a cheap recipe for backward instead of a large tensor.

Autograd keeps every tensor an operation needs for its backward.  Some of them are cheap
to compute again from tensors autograd keeps anyway: the GELU output that the second
feed-forward matmul saves (recomputed from the GELU input, which GELU's own backward
saves), and the first LayerNorm's output that the first feed-forward matmul saves
(recomputed from the LayerNorm's input, which its backward saves).  At ``size=base``,
batch 16, sequence 128 these are 360 MB of saved activations, and their recomputation
costs one elementwise pass each in backward.  Modules using recipes have a ``recompute``
flag; activation checkpointing turns it off (see ``TransformerEncoder``).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch


@contextmanager
def _recompute_saved(output: torch.Tensor, recipe: Callable[[], torch.Tensor]) -> Iterator[None]:
    # Only the address and dtype: the hooks outlive this block, and must not keep ``output`` alive.
    address, dtype = output.untyped_storage().data_ptr(), output.dtype

    def pack(saved: torch.Tensor):
        if saved.dtype == dtype and saved.untyped_storage().data_ptr() == address:
            return _Recipe(saved.size(), saved.stride(), saved.storage_offset())
        return saved

    def unpack(packed):
        if isinstance(packed, _Recipe):
            return recipe().as_strided(packed.size, packed.stride, packed.offset)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


class _Recipe:
    __slots__ = ("size", "stride", "offset")

    def __init__(self, size, stride, offset):
        self.size, self.stride, self.offset = size, stride, offset


def recompute_in_backward(output: torch.Tensor, recipe: Callable[[], torch.Tensor]):
    """A context in which ``output`` (and views of it) is saved for backward as ``recipe``.

    ``recipe()`` must return a tensor equal to ``output`` (same dtype, contiguous) from
    tensors that are kept alive anyway; it must not hold ``output`` itself.  Without
    autograd, or when ``output`` is not a fresh contiguous tensor, this is a no-op; so it is under
    ``torch.compile``, whose compiler decides for itself what backward keeps and recomputes.
    """
    if torch.compiler.is_compiling() or not (torch.is_grad_enabled() and output.requires_grad and output.is_contiguous()
            and output.storage_offset() == 0):
        return nullcontext()
    return _recompute_saved(output, recipe)
