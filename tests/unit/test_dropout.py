"""The CPU dropout and attention in uer.models.dropout keep the semantics of torch's."""

import pytest
import torch
import torch.nn.functional as F

from uer.models.dropout import Dropout, attention, dropout, effective_rate, keep_mask, kept_scale


def test_dropout_drops_p_and_scales_the_rest():
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 0.5  # no zeros of its own
    y = dropout(x, 0.1, training=True)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.002
    torch.testing.assert_close(y[~dropped], x[~dropped] * kept_scale(0.1))


def test_the_rate_is_p_to_16_bits_and_the_scale_keeps_the_expectation():
    assert effective_rate(0.1) == 6554 / 65536 and abs(effective_rate(0.1) - 0.1) < 2**-17
    assert effective_rate(0.25) == 0.25 and kept_scale(0.25) == 1 / 0.75
    assert effective_rate(1e-12) == 0.0 and kept_scale(1e-12) == 1.0
    assert effective_rate(1 - 1e-9) < 1.0  # never everything: the scale stays finite
    assert (1 - effective_rate(0.1)) * kept_scale(0.1) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 1000)])
def test_keep_mask_lanes_are_independent_and_at_the_rate(shape):
    torch.manual_seed(0)
    kept = torch.stack([keep_mask(shape, 0.3) for _ in range(4000 // shape[-1] + 200)])
    assert kept.dtype == torch.uint8 and kept.shape[1:] == shape and set(kept.unique().tolist()) == {0, 1}
    masks = kept == 0  # dropped
    rate = masks.float().mean().item()
    assert abs(rate - 0.3) < 0.01
    # the four 16-bit lanes of one draw must not agree more than independent draws would
    flat = masks.flatten(1)
    if flat.size(1) >= 4:
        both = (flat[:, 0] & flat[:, 1]).float().mean().item()
        assert abs(both - 0.09) < 0.03


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    y.sum().backward()
    kept = (y != 0).float()
    torch.testing.assert_close(x.grad, kept / 0.75)


def test_keep_mask_decides_at_the_threshold_and_keeps_all_at_a_zero_rate():
    torch.manual_seed(2)
    kept = keep_mask((40_000,), 0.5)
    torch.manual_seed(2)  # the same draw: a lane below 0 (the threshold of 0.5) drops its element
    lanes = torch.empty(10_000, dtype=torch.int64).random_(-2**63, None).view(torch.int16)
    assert torch.equal(kept, (lanes >= 0).to(torch.uint8))
    assert torch.equal(keep_mask((3, 4), 1e-12), torch.ones(3, 4, dtype=torch.uint8))


def test_dropout_keeps_only_the_one_byte_mask_for_backward():
    x = torch.randn(16, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        dropout(x * 1, 0.1, training=True)
        dropout(x * 1, 0.1, training=True, inplace=True)
    assert saved == [torch.uint8, torch.uint8]


def test_dropout_is_identity_in_eval_and_at_zero():
    x = torch.randn(8, 8)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert torch.count_nonzero(dropout(x, 1.0, training=True)) == 0


def test_dropout_follows_the_seed():
    x = torch.randn(100, 100)
    torch.manual_seed(3)
    first = dropout(x, 0.3, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.3, training=True))


def _qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 6, 4, generator=g) for _ in range(3)]


PADDING = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=torch.bool)[:, None, None, :]


@pytest.mark.parametrize("mask,causal", [(None, False), (PADDING, False), (None, True)],
                         ids=["no-mask", "padding", "causal"])
def test_attention_with_dropout_path_matches_sdpa(mask, causal):
    """A vanishing dropout rate takes the explicit CPU path; its math must be SDPA's."""
    q, k, v = _qkv()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(attention(q, k, v, mask, causal, 1e-12), expected)


def test_attention_dropout_drops_probabilities_not_outputs():
    q, k, v = _qkv(1)
    v = torch.ones_like(v)  # every row of probabilities sums to 1, so outputs are the kept mass
    torch.manual_seed(0)
    out = attention(q, k, v, None, False, 0.5)
    assert not torch.allclose(out, torch.ones_like(out))
    assert abs(out.mean().item() - 1.0) < 0.2


def test_attention_under_bf16_autocast_stays_close_to_fp32():
    q, k, v = _qkv(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = attention(q, k, v, PADDING, False, 1e-12)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), attention(q, k, v, PADDING, False, 1e-12), atol=0.05, rtol=0.05)


def test_inplace_dropout_writes_into_its_input_and_matches_the_copying_one():
    x = torch.randn(50, 40)
    torch.manual_seed(4)
    expected = dropout(x, 0.2, training=True)
    torch.manual_seed(4)
    copy = x.clone()
    assert dropout(copy, 0.2, training=True, inplace=True) is copy
    torch.testing.assert_close(copy, expected)


def _reference_attention(q, k, v, mask, p, keep):
    """Autograd's own attention with dropout, given the kept-probabilities mask."""
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, dim=-1) * keep * kept_scale(p)) @ v


@pytest.mark.parametrize("mask,causal", [(None, False), (PADDING, False), (None, True)],
                         ids=["no-mask", "padding", "causal"])
def test_attention_with_dropout_has_autograds_gradients(mask, causal):
    q, k, v = (t.requires_grad_() for t in _qkv(3))
    grad_out = torch.randn(2, 3, 6, 4)
    torch.manual_seed(5)
    attention(q, k, v, mask, causal, 0.3).backward(grad_out)
    ours = [t.grad.clone() for t in (q, k, v)]
    torch.manual_seed(5)  # the same mask: the first draw, (batch x heads, queries, keys)
    keep = keep_mask((6, 6, 6), 0.3).bool().view(2, 3, 6, 6)
    reference_mask = torch.ones(6, 6, dtype=torch.bool).tril() if causal else mask
    for t in (q, k, v):
        t.grad = None
    _reference_attention(q, k, v, reference_mask, 0.3, keep).backward(grad_out)
    for got, want in zip(ours, (q.grad, k.grad, v.grad)):
        torch.testing.assert_close(got, want)


def test_attention_with_dropout_keeps_no_probabilities_for_backward():
    q, k, v = (t.requires_grad_() for t in _qkv(4))
    saved = []

    def pack(tensor):
        saved.append((tuple(tensor.shape), tensor.dtype))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        attention(q, k, v, PADDING, False, 0.1)
    probability_shaped = [shape for shape, dtype in saved if shape[-2:] == (6, 6) and dtype.is_floating_point]
    assert probability_shaped == []
    assert ((6, 6, 6), torch.uint8) in saved  # the dropout mask, one byte an entry


def test_attention_gradients_under_bf16_autocast_stay_close_to_fp32():
    """bf16 keeps the probabilities and the softmax backward in bf16 (computed in fp32 inside)."""
    grads = {}
    for low in (False, True):
        q, k, v = (t.requires_grad_() for t in _qkv(6))
        torch.manual_seed(7)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = attention(q, k, v, PADDING, False, 0.2)
        out.float().backward(torch.linspace(-1, 1, out.numel()).view(out.shape))
        grads[low] = [t.grad for t in (q, k, v)]
    for low, high in zip(grads[True], grads[False]):
        assert low.dtype == torch.float32
        torch.testing.assert_close(low, high, atol=0.03, rtol=0.03)
