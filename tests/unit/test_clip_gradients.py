"""The Trainer's gradient clipping gives clip_grad_norm_'s gradients and norm, multiplying only when it clips."""

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from uer.training.trainer import clip_gradients


def _model_with_gradients(scale: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 3))
    (model(torch.randn(4, 8)).sum() * scale).backward()
    return model


@pytest.mark.parametrize("max_norm", [1e-3, 1.0, 1e6], ids=["clips", "around", "never"])
def test_clip_gradients_matches_torch(max_norm):
    ours, theirs = _model_with_gradients(1.0), _model_with_gradients(1.0)
    norm = clip_gradients(ours, max_norm)
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    assert torch.equal(norm, expected)
    for got, want in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(got.grad, want.grad)


class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("max_norm,multiplied", [(1e6, False), (1e-3, True)])
def test_gradients_are_multiplied_only_when_clipped(max_norm, multiplied):
    model = _model_with_gradients(1.0)
    with _Calls() as calls:
        clip_gradients(model, max_norm)
    assert any(name in ("mul_", "_foreach_mul_") for name in calls.names) == multiplied


def test_a_nan_norm_is_returned_and_the_gradients_multiplied_as_torch_does():
    ours, theirs = _model_with_gradients(float("nan")), _model_with_gradients(float("nan"))
    assert clip_gradients(ours, 1.0).isnan() and nn.utils.clip_grad_norm_(theirs.parameters(), 1.0).isnan()
    assert all(param.grad.isnan().all() for param in ours.parameters())
