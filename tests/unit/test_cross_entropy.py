"""uer.models.cross_entropy: the summed cross-entropy equals ``F.cross_entropy``'s loss and gradients (label
smoothing or not, writing new log-probabilities or overwriting the logits), and a second backward says why it
cannot run."""

import pytest
import torch
import torch.nn.functional as F

from uer.models.cross_entropy import cross_entropy_sum, log_softmax_in_place


def linear_and_inputs(rows: int, classes: int):
    generator = torch.Generator().manual_seed(rows + classes)
    layer = torch.nn.Linear(8, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, 8, generator=generator))
    hidden = torch.randn(rows, 8, generator=generator, requires_grad=True)
    return layer, hidden, torch.randint(0, classes, (rows,), generator=generator)


@pytest.mark.parametrize("consume", [False, True], ids=["new-tensor", "in-place"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("rows,classes", [(5, 3), (70, 5000), (0, 7)])
def test_loss_and_gradients_equal_torchs(consume, smoothing, rows, classes):
    """Against torch's loss in float64 (torch's own float32 gradient with smoothing is farther from it)."""
    layer, hidden, labels = linear_and_inputs(rows, classes)
    loss = cross_entropy_sum(layer(hidden), labels, smoothing, consume_logits=consume) * 0.5
    grads = torch.autograd.grad(loss, [hidden, layer.weight, layer.bias])
    wide = [tensor.detach().double().requires_grad_() for tensor in (hidden, layer.weight, layer.bias)]
    expected = F.cross_entropy(F.linear(*wide), labels, reduction="sum", label_smoothing=smoothing) * 0.5
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)
    for grad, want in zip(grads, torch.autograd.grad(expected, wide)):
        torch.testing.assert_close(grad.double(), want, rtol=1e-5, atol=1e-5)


def test_in_place_the_logits_become_the_log_probabilities_chunk_by_chunk():
    logits = torch.randn(600, 1000, generator=torch.Generator().manual_seed(0))  # several chunks of rows
    expected = torch.log_softmax(logits, dim=-1)
    assert log_softmax_in_place(logits) is logits
    torch.testing.assert_close(logits, expected)


def test_a_second_backward_says_the_loss_must_be_computed_again():
    layer, hidden, labels = linear_and_inputs(4, 6)
    loss = cross_entropy_sum(layer(hidden), labels)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="compute the loss again"):
        loss.backward()
