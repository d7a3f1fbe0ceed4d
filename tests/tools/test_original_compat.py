"""Models of the original UER-py toolkit: its LayerNorm, its untied output matrix, its file names.

The original computes ``gamma * (x - mean) / (std + eps) + beta`` with the unbiased std and
eps = 1e-6 outside the square root; its ``pretrain.py`` ties the MLM output matrix to the
word embedding only with ``--tie_weights``; it writes ``model.bin-STEP``.  Formulas are
written out here, not imported, so a test fails if the implementation drifts from them.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F

from test_convert import randomized
from tool_testing import CHARS, arch, make_model, run_tool, write_vocab
from uer.config.original_file import adopt_original_file
from uer.data.build import build_pretrain_dataset
from uer.data.pretrain_dataset import PretrainDataset
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.io.formats import read_model_file
from uer.io.uer_format import load_uer_bin, save_uer_bin
from uer.models import build_backbone, build_model
from uer.models.layer_norm import UerLayerNorm
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tools.cloze import mlm_logits
from uer.tools.model_loading import load_model
from uer_testing import ROOT, VOCAB, compose_config, expect_user_error, save_model_checkpoint

EPS = 1e-6


def original_layer_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The original's formula, in float64: unbiased std, eps added to it."""
    x = x.double()
    n = x.size(-1)
    mean = x.sum(-1, keepdim=True) / n
    std = (((x - mean) ** 2).sum(-1, keepdim=True) / (n - 1)).sqrt()
    return gamma.double() * (x - mean) / (std + EPS) + beta.double()


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


# --- item 1: the original's LayerNorm ---------------------------------------------------------

def test_uer_layernorm_is_the_original_formula_everywhere(vocab):
    _, model, _ = make_model(vocab, "model.layernorm=uer", "target=bert", "model.dropout=0.0")
    model = randomized(model, seed=3)
    norms = {name: module for name, module in model.named_modules() if name.endswith(("layer_norm", "layer_norm_1",
                                                                                        "layer_norm_2"))}
    assert len(norms) == 1 + 2 * 2 + 1 and all(isinstance(m, UerLayerNorm) for m in norms.values())
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0)) * 3 + 1
    for name, module in norms.items():
        expected = original_layer_norm(x, module.weight.detach(), module.bias.detach())
        torch.testing.assert_close(module(x).double(), expected, rtol=0, atol=1e-6, msg=name)
        # torch's LayerNorm is another formula: the comparison above can fail
        standard = F.layer_norm(x, (32,), module.weight.detach(), module.bias.detach(), EPS).double()
        assert (standard - expected).abs().max() > 1e-3, name
    # and the model uses it: the embedding's output is the formula over word + position + segment
    src, seg = torch.tensor([[2, 7, 8, 9, 3]]), torch.tensor([[1, 1, 1, 2, 2]])
    emb = model.backbone.embedding
    summed = emb.word_embedding.weight[src] + emb.position_embedding.weight[:5] + emb.segment_embedding.weight[seg]
    expected = original_layer_norm(summed.detach(), emb.layer_norm.weight.detach(), emb.layer_norm.bias.detach())
    with torch.no_grad():
        torch.testing.assert_close(emb(src, seg).double(), expected, rtol=0, atol=1e-6)


def test_uer_layernorm_under_bf16_autocast_keeps_float32():
    norm = UerLayerNorm(8, EPS)
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), original_layer_norm(x.float(), norm.weight, norm.bias).detach(),
                               rtol=0, atol=1e-6)


def convert(vocab, source, input_format, output, output_format, *extra):
    return run_tool("convert", f"tool.input_path={source}", f"tool.input_format={input_format}",
                    f"tool.output_path={output}", f"tool.output_format={output_format}", *extra, vocab=vocab)


def test_round_trip_through_an_original_bin_is_exact_and_keeps_the_layernorm(tmp_path, vocab, caplog):
    cfg = compose_config(arch("model.layernorm=uer", "target=bert", vocab=vocab))
    model = randomized(build_model(cfg.embedding, cfg.encoder, cfg.target, len(CHARS) + 5), seed=5)
    ours = save_model_checkpoint(tmp_path / "ours.pt", model, cfg)
    original = tmp_path / "model.bin-7"  # the original's step-suffixed name
    convert(vocab, ours, "uer_ckpt", original, "uer")
    with caplog.at_level(logging.INFO):
        convert(vocab, original, "uer", tmp_path / "back.pt", "uer_ckpt", "target=bert")
    assert "model.layernorm=uer" in caplog.text
    payload = load_checkpoint(tmp_path / "back.pt")
    state = model.state_dict()
    assert sorted(payload["model"]) == sorted(state)
    assert all(torch.equal(payload["model"][key], tensor) for key, tensor in state.items())
    config = payload["config"]
    assert config["model"]["layernorm"] == config["embedding"]["layernorm"] == config["encoder"]["layernorm"] == "uer"
    loaded = load_model(compose_config(["stage=tool", "tool=check_model", f"tool.input_path={tmp_path / 'back.pt'}"]))
    src = torch.tensor([[2, 7, 8, 9, 3]])
    with torch.no_grad():
        assert torch.equal(loaded.backbone(src, torch.ones_like(src)), model.backbone(src, torch.ones_like(src)))


def test_converting_the_original_layernorm_to_hf_says_it_is_approximate(tmp_path, vocab, caplog):
    cfg = compose_config(arch("model.layernorm=uer", "target=bert", vocab=vocab))
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(CHARS) + 5)
    ours = save_model_checkpoint(tmp_path / "ours.pt", model, cfg)
    with caplog.at_level(logging.WARNING):
        convert(vocab, ours, "uer_ckpt", tmp_path / "hf.bin", "hf")
    assert "approximate" in caplog.text and "Hugging Face" in caplog.text


# --- item 2: an untied output matrix is used, never dropped --------------------------------------

CORPUS = ["北京是中国的首都", "上海一座大城市", "天气很好我们喜欢读书", "这本书有意思"] * 8


@pytest.fixture()
def untied_file(tmp_path, vocab):
    """An original-layout file (mlm target, no --tie_weights) named like the original's step files."""
    cfg, model, _ = make_model(vocab, "target=mlm", "target.tie_weights=false", "model.layernorm=uer")
    model = randomized(model, seed=11)
    path = tmp_path / "x.bin-100"
    save_uer_bin(model, path)
    state = load_uer_bin(path)
    assert not torch.equal(state["target.mlm_linear_2.weight"], state["embedding.word_embedding.weight"])
    return path, state


def head_by_hand(state: dict, hidden: torch.Tensor) -> torch.Tensor:
    """The MLM head's logits from the file's own tensors: linear, exact GELU, the original's LayerNorm, linear."""
    h = hidden.double()
    h = h @ state["target.mlm_linear_1.weight"].double().t() + state["target.mlm_linear_1.bias"].double()
    h = 0.5 * h * (1 + torch.erf(h / 2 ** 0.5))
    h = original_layer_norm(h, state["target.layer_norm.gamma"], state["target.layer_norm.beta"])
    return h @ state["target.mlm_linear_2.weight"].double().t() + state["target.mlm_linear_2.bias"].double()


def test_cloze_test_uses_the_untied_matrix_of_a_step_named_file(tmp_path, vocab, untied_file, caplog):
    path, state = untied_file
    out = tmp_path / "cloze.jsonl"
    text = "北京是中国的[MASK]都"
    with caplog.at_level(logging.INFO):
        run_tool("cloze_test", f"tool.input_path={path}", f"tool.text='{text}'", f"tool.output_path={out}",
                 "tool.topn=5", vocab=vocab)
    assert "target.tie_weights=false" in caplog.text and "model.layernorm=uer" in caplog.text
    result = json.loads(out.read_text(encoding="utf-8"))
    loaded = load_model(compose_config(["stage=tool", "tool=cloze_test", f"tool.input_path={path}",
                                        *arch(vocab=vocab)]))
    ids = [2, *loaded.tokenizer.encode("北京是中国的"), 4, *loaded.tokenizer.encode("都"), 3]
    with torch.no_grad():
        hidden = loaded.backbone(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0, ids.index(4)]
    probs = torch.softmax(head_by_hand(state, hidden), dim=-1)
    top = probs.topk(5)
    expected = [[loaded.tokenizer.vocab.id_to_token(i), round(p, 6)] for p, i in zip(top.values.tolist(),
                                                                                      top.indices.tolist())]
    assert [token for token, _ in result["predictions"][0]] == [token for token, _ in expected]
    for (_, p), (_, q) in zip(result["predictions"][0], expected):
        assert abs(p - q) < 2e-6


def test_pretraining_continues_the_untied_matrix(tmp_path, vocab, untied_file, caplog):
    path, state = untied_file
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    tokenizer = ["tokenizer=char", f"tokenizer.vocab_path={vocab}"]
    run_stage(compose_config(["stage=preprocess", *tokenizer, "target=mlm", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={tmp_path / 'data'}", "preprocess.seq_length=16"]))
    cfg = compose_config([*arch(vocab=vocab), "target=mlm", f"pretrained_model_path={path}",
                          f"pretrain.dataset_path={tmp_path / 'data'}", "pretrain.total_steps=1",
                          "pretrain.batch_size=4", "pretrain.learning_rate=1e-12",
                          f"output_model_path={tmp_path / 'out'}"])
    assert cfg.target.tie_weights is True and cfg.model.layernorm is None  # the composed defaults
    with caplog.at_level(logging.INFO):
        run_stage(cfg)
    payload = load_checkpoint(tmp_path / "out" / "step_1.pt")
    assert payload["config"]["target"]["tie_weights"] is False and payload["config"]["model"]["layernorm"] == "uer"
    # one step at a learning rate of 1e-12: the weights are still the file's
    trained = payload["model"]
    torch.testing.assert_close(trained["target.mlm_linear_2.weight"], state["target.mlm_linear_2.weight"], rtol=0,
                               atol=1e-9)
    assert not torch.equal(trained["target.mlm_linear_2.weight"], trained["backbone.embedding.word_embedding.weight"])
    loaded = load_model(compose_config(["stage=tool", "tool=cloze_test",
                                        f"tool.input_path={tmp_path / 'out' / 'step_1.pt'}"]))
    src = torch.tensor([[2, 7, 4, 9, 3]])
    with torch.no_grad():
        hidden = loaded.backbone(src, torch.ones_like(src))[0]
        torch.testing.assert_close(mlm_logits(loaded.target, hidden).double(), head_by_hand(state, hidden),
                                   rtol=0, atol=1e-5)


def test_finetuning_from_the_file_lists_what_it_does_not_use(tmp_path, vocab, untied_file, caplog):
    path, state = untied_file
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n" + "".join(f"{i % 2}\t{line}\n" for i, line in enumerate(CORPUS)),
                     encoding="utf-8")
    cfg = compose_config(["task=classifier", *arch(vocab=vocab), f"pretrained_model_path={path}",
                          f"finetune.train_path={train}", f"finetune.dev_path={train}", "finetune.epochs_num=1",
                          "finetune.seq_length=16", "finetune.batch_size=8", f"output_model_path={tmp_path / 'clf'}"])
    with caplog.at_level(logging.INFO):
        run_stage(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "x.bin-100" in
                r.getMessage()]
    assert len(warnings) == 1, warnings
    unused = warnings[0].split("not used, no place in this model", 1)[1]
    for key in ("target.mlm_linear_2.weight", "target.mlm_linear_1.weight", "target.layer_norm.weight"):
        assert key in unused
    assert "initialised, not in the file" in warnings[0] and "output_layer_1.weight" in warnings[0]
    config = load_checkpoint(tmp_path / "clf" / "best.pt")["config"]
    assert config["model"]["layernorm"] == config["embedding"]["layernorm"] == "uer"
    # stage=infer rebuilds the backbone from these nodes: with the original's LayerNorm
    backbone = build_backbone(config["embedding"], config["encoder"], len(CHARS) + 5)
    assert isinstance(backbone.embedding.layer_norm, UerLayerNorm)
    assert isinstance(backbone.encoder.transformer[0].layer_norm_2, UerLayerNorm)


def test_an_explicit_tie_is_kept_with_a_warning(untied_file, vocab, caplog):
    path, state = untied_file
    cfg = compose_config(["stage=tool", "tool=cloze_test", *arch("model.layernorm=standard", vocab=vocab)])
    with caplog.at_level(logging.INFO):
        adopt_original_file(cfg, path, state, ["target.tie_weights=true"])
    assert cfg.target.tie_weights is True and cfg.model.layernorm == "standard"
    assert "is not the word embedding, but target.tie_weights=true" in caplog.text
    assert "read with model.layernorm=standard as asked" in caplog.text


# --- item 3: model files by content -------------------------------------------------------------

def test_files_are_recognised_by_content_and_others_are_named(tmp_path, untied_file):
    path, state = untied_file
    assert read_model_file(path)[0] == "bin"
    prefixed = tmp_path / "multi_gpu"  # saved from DataParallel: every name starts with "module."
    torch.save({f"module.{key}": tensor for key, tensor in state.items()}, prefixed)
    kind, content = read_model_file(prefixed)
    assert kind == "bin" and sorted(content) == sorted(state)
    hf = tmp_path / "model.pt"
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, hf)
    with pytest.raises(UerError, match="Hugging Face BERT state dict.*tool=convert tool.input_format=hf"):
        read_model_file(hf)
    other = tmp_path / "model.bin"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(UerError, match=r"a dict of tensors without embedding.word_embedding.weight, with keys"):
        read_model_file(other)
    listed = tmp_path / "list.bin"
    torch.save([1, 2], listed)
    with pytest.raises(UerError, match="it holds a list"):
        read_model_file(listed)
    with pytest.raises(UerError, match="an original UER model file"):
        load_checkpoint(path)


# --- item 8: missing weights ------------------------------------------------------------------------

def test_a_preset_without_its_weights_says_where_they_are_published(capsys):
    line = expect_user_error(capsys, compose_config(["experiment=bert_douban"]), "models/google_zh_model.bin",
                             "nothing is downloaded", "https://github.com/dbiir/UER-py#modelzoo",
                             "https://huggingface.co/uer")
    for fmt, source in (("hf", "DIR"), ("tf", "DIR/bert_model.ckpt")):
        assert (f"python main.py tool=convert tool.input_format={fmt} tool.input_path={source} "
                "tool.output_format=uer_ckpt tool.output_path=models/google_zh_model.pt "
                "tokenizer.vocab_path=DIR/vocab.txt") in line
    expect_user_error(capsys, compose_config(["experiment=bert_book_review"]),
                      "outputs/models/bert_book_review_pretrain/step_5000.pt not found",
                      "python main.py experiment=bert_book_review_pretrain "
                      "output_model_path=outputs/models/bert_book_review_pretrain")


# --- item 7: the standalone nsp target --------------------------------------------------------------

def test_nsp_target_is_one_linear_layer_on_cls_with_the_original_names(vocab):
    _, model, _ = make_model(vocab, "target=nsp", "model.dropout=0.0")
    model = randomized(model, seed=2)
    assert sorted(k for k in model.state_dict() if k.startswith("target.")) == ["target.linear.bias",
                                                                               "target.linear.weight"]
    src, seg = torch.tensor([[2, 7, 8, 3, 9, 10, 3]] * 2), torch.tensor([[1, 1, 1, 1, 2, 2, 2]] * 2)
    labels = torch.tensor([0, 1])
    output = model({"src": src, "seg": seg, "sentence_labels": labels})
    with torch.no_grad():
        first = model.backbone(src, seg)[:, 0].double()
        logits = first @ model.target.linear.weight.double().t() + model.target.linear.bias.double()
        expected = -torch.log_softmax(logits, dim=-1)[torch.arange(2), labels].mean()
    torch.testing.assert_close(output.loss.double(), expected, rtol=0, atol=1e-6)
    assert set(output.stats) == {"nsp_loss", "nsp_acc"}


def test_nsp_dataset_holds_sentence_pairs_without_masks(tmp_path):
    corpus = tmp_path / "pairs.txt"
    lines = (ROOT / "corpora" / "book_review_bert.txt").read_text(encoding="utf-8").split("\n")[:80]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = build_tokenizer({"type": "bert", "vocab_path": str(VOCAB)})
    build_pretrain_dataset(corpus, tmp_path / "d", tokenizer, "nsp", seq_length=32)
    dataset = PretrainDataset(tmp_path / "d")
    batch = dataset.batch(list(range(min(8, len(dataset)))), 0, 7)
    assert set(batch) == {"src", "seg", "sentence_labels"}
    assert (batch["src"] != tokenizer.vocab.mask_id).all() and batch["seg"].max() == 2
