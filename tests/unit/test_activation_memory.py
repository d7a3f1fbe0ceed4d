"""Less activation memory, same gradients: the recompute recipes and hardware.activation_checkpointing."""

from __future__ import annotations

import functools
import weakref

import pytest
import torch
import torch.nn.functional as F

from uer.distributed import DistEnv
from uer.models import build_model
from uer.models.layers import PositionwiseFeedForward, TransformerLayer
from uer.models.recompute import recompute_in_backward
from uer.training.process import training_model
from test_models import make_batch, make_model
from tool_testing import write_vocab
from uer_testing import SMALL, compose_config, expect_user_error


def gradients(model, batch, seed=7):
    torch.manual_seed(seed)  # the same dropout masks in both runs
    model.zero_grad(set_to_none=True)
    model.train()
    model(batch).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


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


def set_recompute(model, on: bool) -> None:
    for module in model.modules():
        if isinstance(module, (PositionwiseFeedForward, TransformerLayer)):
            module.recompute = on


def saved_bytes(model, batch) -> int:
    """Bytes of the distinct non-parameter storages autograd keeps for backward of one forward pass."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(batch)
    return sum(storages.values())


@pytest.mark.parametrize("arch", ["mlm", "gpt"])
def test_recompute_recipes_leave_gradients_unchanged(arch):
    model = make_model(arch, dropout=0.1)
    batch = make_batch(arch)
    with_recipes = gradients(model, batch)
    set_recompute(model, False)
    assert_same_gradients(with_recipes, gradients(model, batch))


def test_recompute_recipes_keep_less_for_backward():
    model = make_model("mlm", dropout=0.1)
    batch = make_batch("mlm")
    with_recipes = saved_bytes(model, batch)
    set_recompute(model, False)
    without = saved_bytes(model, batch)
    hidden = model.backbone.encoder.hidden_size
    feedforward = model.backbone.encoder.transformer[0].feed_forward.linear_1.out_features
    tokens = batch["src"].numel()
    layers = model.backbone.encoder.layers_num
    # per layer: the GELU output and the first LayerNorm's output (fp32)
    assert without - with_recipes == layers * tokens * (feedforward + hidden) * 4


@pytest.mark.parametrize("arch", ["mlm", "albert", "gpt"])
def test_activation_checkpointing_gives_the_same_gradients(arch):
    model = make_model(arch, dropout=0.1)
    batch = make_batch(arch)
    plain = gradients(model, batch)
    model.backbone.encoder.enable_activation_checkpointing()
    assert_same_gradients(plain, gradients(model, batch))


@pytest.mark.parametrize("extra", [[], [f"{part}.{key}" for part in ("encoder", "decoder") for key in (
    "layernorm_positioning=pre", "relative_position_buckets=8", "feedforward=gated")]], ids=["bart-like", "t5-like"])
def test_activation_checkpointing_of_an_encoder_decoder_recomputes_both_stacks_with_the_same_gradients(
        tmp_path, extra):
    vocab_path = write_vocab(tmp_path / "vocab.txt")
    cfg = compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke",
                          f"tokenizer.vocab_path={vocab_path}", "model.dropout=0.1",
                          "hardware.activation_checkpointing=true", *extra])
    cfg.decoder.start_id = 2
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, 30, decoder_cfg=cfg.decoder)
    generator = torch.Generator().manual_seed(3)
    src, tgt = torch.randint(5, 30, (4, 9), generator=generator), torch.randint(5, 30, (4, 7), generator=generator)
    src[0, 6:], tgt[1, 5:] = 0, 0
    batch = {"src": src, "seg": (src != 0).long(), "tgt_in": torch.cat([torch.full((4, 1), 2), tgt[:, :-1]], 1),
             "tgt_out": tgt}
    plain, kept = gradients(model, batch), saved_bytes(model, batch)
    assert training_model(model, cfg.hardware, DistEnv(), torch.device("cpu")) is model
    assert model.backbone.encoder.activation_checkpointing and model.decoder.activation_checkpointing
    assert_same_gradients(plain, gradients(model, batch))
    assert saved_bytes(model, batch) < kept / 2
    model.backbone.encoder.activation_checkpointing = False  # the decoder's alone keeps less too
    assert saved_bytes(model, batch) < kept


def test_activation_checkpointing_with_a_recurrent_encoder_is_refused(capsys, tmp_path):
    cfg = compose_config(["stage=finetune", "task=classifier", "encoder=lstm", *SMALL,
                          "hardware.activation_checkpointing=true",
                          "finetune.train_path=datasets/test_data/book_review/train.tsv",
                          "finetune.dev_path=datasets/test_data/book_review/dev.tsv",
                          f"output_model_path={tmp_path}/model"])
    expect_user_error(capsys, cfg, "hardware.activation_checkpointing", "set it to false")
    assert not (tmp_path / "model").exists()
