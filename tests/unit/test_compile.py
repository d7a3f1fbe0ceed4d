"""``hardware.compile=true``: the transformer models compile whole (``fullgraph=True``: no graph break,
forward and backward), give the eager model's loss and gradients, and batches of other lengths do not
compile a graph each.  Dynamo's ``aot_eager`` backend traces forward and backward as inductor would, without
generating code, so this runs in seconds on any machine."""

import pytest
import torch

from uer.models import build_model
from uer_testing import SMALL, compose_config

VOCAB = 120


def model_and_batch(overrides, length=24, dropout=0.0):
    cfg = compose_config(["stage=pretrain", *overrides, *SMALL, "model.max_seq_length=64", f"model.dropout={dropout}"])
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, VOCAB, decoder_cfg=cfg.get("decoder"))
    return model.train(), batch(cfg.target.type, length)


def batch(target, length, rows=4):
    g = torch.Generator().manual_seed(length)
    src = torch.randint(5, VOCAB, (rows, length), generator=g)
    src[0, length // 2:] = 0  # a padded row: the attention mask path
    seg = (src != 0).long()
    if target == "mlm":
        positions = torch.tensor([1, 3, length + 2, 2 * length + 5])
        return {"src": src, "seg": seg, "mlm_positions": positions, "mlm_labels": src.view(-1)[positions]}
    if target == "lm":
        labels = torch.roll(src, -1, dims=1).masked_fill(src == 0, -100)
        return {"src": src, "seg": seg, "lm_labels": labels}
    tgt = torch.randint(5, VOCAB, (rows, 7), generator=g)
    return {"src": src, "seg": seg, "tgt_in": tgt, "tgt_out": torch.roll(tgt, -1, dims=1)}


MODELS = {"bert": ["encoder=bert", "target=mlm"], "gpt": ["encoder=gpt", "target=lm"],
          "seq2seq": ["encoder=bert", "decoder=transformer", "target=seq2seq"]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_model_compiles_whole_and_matches_eager(name):
    model, data = model_and_batch(MODELS[name])
    eager = model(data).loss
    eager.backward()
    expected = {key: p.grad.clone() for key, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(data).loss
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for key, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[key].grad, grad, rtol=1e-4, atol=1e-5)


def test_dropout_compiles_whole_too():
    model, data = model_and_batch(MODELS["bert"], dropout=0.1)
    loss = torch.compile(model, fullgraph=True, backend="aot_eager")(data).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_batches_of_other_lengths_do_not_each_compile_a_graph():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    model, _ = model_and_batch(MODELS["bert"])
    compiled = torch.compile(model, backend=counting_backend)
    for length in (16, 20, 24, 28):
        compiled(batch("mlm", length)).loss.backward()
    assert len(graphs) <= 2  # the first length, then one graph with the length dynamic
