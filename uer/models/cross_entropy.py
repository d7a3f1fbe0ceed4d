"""Summed cross-entropy whose backward reuses the forward's log-probabilities in place.

``F.cross_entropy`` keeps the log-softmax for backward and there writes two more tensors of the logits'
size: a zero-filled one with the label positions set (the NLL's gradient) and the log-softmax's gradient.
Over a vocabulary of ~20,000 tokens each such pass costs about a quarter of the vocabulary matmul on a CPU
(fresh pages of a tensor that large are faulted in and zeroed by the kernel).  :func:`cross_entropy_sum`
computes the same loss and its gradient ``softmax - (1 - s) * one_hot - s / V`` (``s``: label smoothing)
by exponentiating the kept log-probabilities in place, so backward writes nothing of the logits' size;
with ``consume_logits`` the log-probabilities overwrite the logits themselves (a caller whose logits come
straight from a linear layer, which keeps only its inputs for backward), so forward writes nothing of that
size either.  The kept tensor is consumed by backward: it runs once per forward.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 18  # rows of at most 1 MiB (float32) per in-place log-softmax: the temporary stays in cache


def log_softmax_in_place(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` (N, C) overwritten by their log-softmax over C, a few rows at a time."""
    for rows in logits.split(max(1, CHUNK_ELEMENTS // max(1, logits.size(-1)))):
        rows.copy_(torch.log_softmax(rows, dim=-1))
    return logits


class _CrossEntropySum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, smoothing: float, consume: bool):
        if consume:
            log_probs = log_softmax_in_place(logits)
            ctx.mark_dirty(logits)
        else:
            log_probs = torch.log_softmax(logits, dim=-1)
        ctx.mark_non_differentiable(log_probs)
        ctx.set_materialize_grads(False)  # else backward gets a zero-filled gradient of log_probs' size
        loss = -log_probs.gather(-1, labels[:, None]).sum()
        if smoothing:
            loss = (1 - smoothing) * loss - smoothing / logits.size(-1) * log_probs.sum()
        ctx.save_for_backward(log_probs, labels)
        ctx.smoothing, ctx.consumed = smoothing, False
        return loss, log_probs

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _unused: None):
        if ctx.consumed:
            raise RuntimeError("cross_entropy_sum's backward ran twice: it consumes its log-probabilities; "
                               "compute the loss again for a second backward")
        ctx.consumed = True
        log_probs, labels = ctx.saved_tensors
        smoothing = ctx.smoothing
        out = log_probs.exp_()  # the softmax
        if smoothing:
            out.sub_(smoothing / out.size(-1))
        rows = torch.arange(labels.numel(), device=labels.device)
        out.index_put_((rows, labels), out.new_full((), smoothing - 1), accumulate=True)
        return out.mul_(grad), None, None, None


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0, *,
                      consume_logits: bool = False) -> torch.Tensor:
    """``F.cross_entropy(logits, labels, reduction="sum", label_smoothing=...)`` for logits (N, C) and labels
    (N,) in ``0 .. C - 1`` (no ignored index).  ``consume_logits``: overwrite ``logits`` (then unusable) instead
    of writing the log-probabilities to a new tensor."""
    # A compiled graph fuses the passes itself; the row chunks would depend on a data-dependent row count.
    consume = consume_logits and not torch.compiler.is_compiling()
    return _CrossEntropySum.apply(logits, labels, float(label_smoothing), consume)[0]
