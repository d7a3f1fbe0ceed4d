"""Model parts: every embedding/encoder/target combination builds, trains and masks correctly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uer_testing import compose_config
from uer.errors import UerError
from uer.models import build_backbone, build_model

VOCAB = 100
HIDDEN = 32

ARCHS = {
    "mlm": {"target": "mlm"},
    "bert": {"target": "bert"},
    "albert": {"target": "albert", "emb_size": 16, "parameter_sharing": True},
    "gpt": {"target": "lm", "embedding": "word_pos", "mask": "causal"},
}
STATS = {
    "mlm": {"mlm_loss", "mlm_acc"},
    "bert": {"mlm_loss", "mlm_acc", "nsp_loss", "nsp_acc"},
    "albert": {"mlm_loss", "mlm_acc", "sop_loss", "sop_acc"},
    "gpt": {"lm_loss", "lm_acc"},
}


def configs(arch: str, **overrides):
    """Tiny (embedding, encoder, target) configs for ``arch``; ``overrides`` set any field."""
    spec = {
        "embedding": "word_pos_seg",
        "mask": "fully_visible",
        "emb_size": HIDDEN,
        "layers_num": 2,
        "parameter_sharing": False,
        "hidden_act": "gelu",
        "dropout": 0.0,
        "tie_weights": True,
        **ARCHS[arch],
        **overrides,
    }
    embedding = dict(
        type=spec["embedding"],
        emb_size=spec["emb_size"],
        max_seq_length=512,
        dropout=spec["dropout"],
        layernorm_eps=1e-6,
    )
    encoder = dict(
        type="transformer",
        mask=spec["mask"],
        hidden_size=HIDDEN,
        feedforward_size=2 * HIDDEN,
        heads_num=2,
        layers_num=spec["layers_num"],
        dropout=spec["dropout"],
        hidden_act=spec["hidden_act"],
        parameter_sharing=spec["parameter_sharing"],
        layernorm_eps=1e-6,
    )
    target = dict(type=spec["target"], tie_weights=spec["tie_weights"])
    return embedding, encoder, target


def make_model(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(*configs(arch, **overrides), VOCAB)


def make_batch(arch: str, length: int = 10, pads=(0, 2, 4), seed: int = 0) -> dict[str, torch.Tensor]:
    """One row per entry of ``pads`` (trailing padding count), labels for ``arch``'s target."""
    gen = torch.Generator().manual_seed(seed)
    rows = len(pads)
    src = torch.randint(5, VOCAB, (rows, length), generator=gen)
    seg = torch.ones(rows, length, dtype=torch.long)
    if arch != "gpt":
        seg[:, length // 2 :] = 2
    for row, pad in enumerate(pads):
        src[row, length - pad :] = 0
        seg[row, length - pad :] = 0
    batch = {"src": src, "seg": seg}
    if arch == "gpt":
        labels = torch.cat([src[:, 1:], torch.zeros(rows, 1, dtype=torch.long)], dim=1)
        labels[labels == 0] = -100
        batch["lm_labels"] = labels
    else:
        real = (seg != 0).reshape(-1).nonzero().squeeze(1)
        positions = real[torch.randperm(real.numel(), generator=gen)[:8]].sort().values
        batch["mlm_positions"] = positions
        batch["mlm_labels"] = torch.randint(5, VOCAB, (positions.numel(),), generator=gen)
        batch["sentence_labels"] = torch.randint(0, 2, (rows,), generator=gen)
    return batch


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_target_trains_one_step(arch):
    model = make_model(arch, dropout=0.1)
    out = model(make_batch(arch))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert set(out.stats) == STATS[arch]
    for numerator, denominator in out.stats.values():
        assert numerator.ndim == 0 and denominator.ndim == 0
        assert not numerator.requires_grad and denominator > 0
    if arch != "gpt":
        assert out.stats["mlm_loss"][1].item() == 8


def test_mlm_logits_only_at_masked_positions():
    model = make_model("mlm").eval()
    batch = make_batch("mlm")
    target = model.target
    seen = []
    target.mlm_linear_2.register_forward_hook(lambda module, args, output: seen.append(tuple(args[0].shape)))
    loss = model(batch).loss
    assert seen == [(8, HIDDEN)]

    hidden = model.backbone(batch["src"], batch["seg"]).reshape(-1, HIDDEN)  # every position
    logits = target.mlm_linear_2(target.layer_norm(F.gelu(target.mlm_linear_1(hidden))))
    reference = F.cross_entropy(logits[batch["mlm_positions"]], batch["mlm_labels"])
    torch.testing.assert_close(loss, reference)


def test_lm_logits_only_at_labelled_positions():
    model = make_model("gpt").eval()
    batch = make_batch("gpt")
    seen = []
    model.target.output_layer.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    out = model(batch)
    labelled = int((batch["lm_labels"] != -100).sum())
    assert seen == [labelled] and out.stats["lm_loss"][1].item() == labelled

    logits = model.target.output_layer(model.backbone(batch["src"], batch["seg"]))
    reference = F.cross_entropy(logits.reshape(-1, VOCAB), batch["lm_labels"].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, reference)


@pytest.mark.parametrize("arch", ["bert", "gpt"])
def test_padding_does_not_change_real_tokens(arch):
    backbone = make_model(arch).backbone.eval()
    batch = make_batch(arch, length=7, pads=(0,))
    alone = backbone(batch["src"], batch["seg"])
    padded = backbone(F.pad(batch["src"], (0, 3)), F.pad(batch["seg"], (0, 3)))
    torch.testing.assert_close(padded[:, :7], alone, rtol=1e-5, atol=1e-5)
    empty_row = torch.zeros_like(batch["seg"])  # an all-padding row must not produce NaN
    assert torch.isfinite(backbone(torch.cat([batch["src"], empty_row]), torch.cat([batch["seg"], empty_row]))).all()


def test_causal_mask_hides_future_tokens():
    backbone = make_model("gpt").backbone.eval()
    batch = make_batch("gpt", pads=(0,))
    changed = batch["src"].clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB
    before, after = backbone(batch["src"], batch["seg"]), backbone(changed, batch["seg"])
    torch.testing.assert_close(after[:, :5], before[:, :5])
    assert not torch.allclose(after[:, 5:], before[:, 5:])


def test_parameter_sharing_reuses_one_layer():
    def count(**overrides):
        return sum(p.numel() for p in make_model("mlm", **overrides).parameters())

    assert count(parameter_sharing=True, layers_num=4) == count(layers_num=1) < count(layers_num=2)


def test_tie_weights_shares_storage():
    tied = make_model("mlm")
    word = tied.backbone.embedding.word_embedding.weight
    assert tied.target.mlm_linear_2.weight is word
    assert tied.target.mlm_linear_2.bias is not None  # the bias stays separate
    gpt = make_model("gpt")
    assert gpt.target.output_layer.weight is gpt.backbone.embedding.word_embedding.weight
    untied = make_model("mlm", tie_weights=False)
    assert untied.target.mlm_linear_2.weight is not untied.backbone.embedding.word_embedding.weight
    albert = make_model("albert")  # (V, E) output matrix: still tieable with E != H
    assert albert.target.mlm_linear_2.weight is albert.backbone.embedding.word_embedding.weight


@pytest.mark.parametrize("arch", ["albert", "gpt"])
def test_bf16_autocast_forward_backward(arch):
    model = make_model(arch, dropout=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch(arch))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_overfits_one_batch():
    model = make_model("mlm")
    batch = make_batch("mlm")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(batch).loss
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = model(batch)
    assert out.loss.item() < 0.3 * first
    assert out.stats["mlm_acc"][0] == out.stats["mlm_acc"][1]  # every masked token right


def test_builds_from_composed_configs():
    cfg = compose_config(["target=bert", "model.emb_size=16", "model.hidden_size=16", "model.feedforward_size=32",
                          "model.heads_num=2", "model.layers_num=1"])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, VOCAB)
    assert model.backbone.hidden_size == 16
    assert torch.isfinite(model(make_batch("bert")).loss)
    backbone = build_backbone(cfg.embedding, cfg.encoder, VOCAB)
    assert backbone(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)).shape == (2, 3, 16)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"embedding": "nope"}, "unknown embedding 'nope'"),
        ({"target": "nope"}, "unknown target 'nope'"),
        ({"hidden_act": "nope"}, "unknown hidden_act 'nope'"),
        ({"mask": "nope"}, "unknown encoder.mask 'nope'"),
    ],
)
def test_bad_names_are_user_errors(overrides, message):
    with pytest.raises(UerError, match=message):
        make_model("mlm", **overrides)


def test_too_long_sequence_is_a_user_error():
    embedding, encoder, _ = configs("mlm")
    embedding["max_seq_length"] = 4
    backbone = build_backbone(embedding, encoder, VOCAB)
    with pytest.raises(UerError, match="max_seq_length 4"):
        backbone(torch.ones(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.long))
