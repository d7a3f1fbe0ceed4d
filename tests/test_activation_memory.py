"""Less activation memory, same gradients: the recompute recipes and hardware.activation_checkpointing."""

from __future__ import annotations

import contextlib
import functools
import weakref

import pytest
import torch
import torch.nn.functional as F

import uer.models.dropout as dropout_module
import uer.models.layers as layers_module
from uer.models.recompute import recompute_in_backward
from test_models import make_batch, make_model
from uer_testing import SMALL, compose_config, expect_user_error


def gradients(model, batch, seed=7):
    torch.manual_seed(seed)  # the same dropout masks in both runs
    model.zero_grad(set_to_none=True)
    model.train()
    model(batch).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same_gradients(first, second):
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], msg=name)


def test_recomputed_tensor_is_freed_and_rebuilt():
    linear_1, linear_2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 8)
    x = torch.randn(2, 3, 8, requires_grad=True)
    hidden = linear_1(x)
    activated = F.gelu(hidden)
    alive = weakref.ref(activated)
    with recompute_in_backward(activated, functools.partial(F.gelu, hidden)):
        out = linear_2(activated)
    del activated
    assert alive() is None, "the hooks must not keep the recomputed tensor alive"
    out.sum().backward()
    reference = F.gelu(hidden.detach()).reshape(-1, 32).sum(0)
    torch.testing.assert_close(linear_2.weight.grad, reference.expand(8, 32))


@pytest.mark.parametrize("arch", ["mlm", "gpt"])
def test_recompute_recipes_leave_gradients_unchanged(arch, monkeypatch):
    model = make_model(arch, dropout=0.1)
    batch = make_batch(arch)
    with_recipes = gradients(model, batch)
    off = lambda *args: contextlib.nullcontext()  # noqa: E731
    monkeypatch.setattr(layers_module, "recompute_in_backward", off)
    monkeypatch.setattr(dropout_module, "recompute_in_backward", off)
    assert_same_gradients(with_recipes, gradients(model, batch))


@pytest.mark.parametrize("arch", ["mlm", "albert", "gpt"])
def test_activation_checkpointing_gives_the_same_gradients(arch):
    model = make_model(arch, dropout=0.1)
    batch = make_batch(arch)
    plain = gradients(model, batch)
    model.backbone.encoder.enable_activation_checkpointing()
    assert_same_gradients(plain, gradients(model, batch))


def test_activation_checkpointing_with_a_recurrent_encoder_is_refused(capsys, tmp_path):
    cfg = compose_config(["stage=finetune", "task=classifier", "encoder=lstm", *SMALL,
                          "hardware.activation_checkpointing=true",
                          "finetune.train_path=datasets/test_data/book_review/train.tsv",
                          "finetune.dev_path=datasets/test_data/book_review/dev.tsv",
                          f"output_model_path={tmp_path}/model"])
    expect_user_error(capsys, cfg, "hardware.activation_checkpointing", "set it to false")
    assert not (tmp_path / "model").exists()
