"""The model zoo: RNN, CNN, attention and synthesizer encoders, the word embedding, the
bilm and cls targets, and the table of combinations that can work.

The matrix test runs every encoder choice x every target the table allows (preprocess a
tiny corpus, 2 pre-training steps, save); a covering subset of the pairs (every encoder choice
and every target at least once) then loads into a classifier for 1 fine-tuning step.  The
table test checks that check_model refuses every other pair, and a covering subset of those is refused by a run
before any work.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uer.combinations import combination_rows, combinations_markdown
from uer.models.compat import IncompatibleModel, check_model, encoder_context
from uer.models.context import CAUSAL, PREFIX, STACKS
from uer.models.targets import TARGETS
from uer.data.build import build_pretrain_dataset
from uer.data.pretrain_dataset import PretrainDataset
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.io.uer_format import from_uer_state_dict, load_into_model, save_uer_bin, to_uer_state_dict
from uer.models import build_backbone, build_model
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines, run_main

THREADS = ["hardware.num_threads=1"]
ENCODER_CHOICES = combination_rows()
TARGET_CONTEXTS = {name: TARGETS.get(name).contexts for name in TARGETS.names()}
CHOICES = {choice.text: choice for choice in ENCODER_CHOICES}
POOLINGS = ("mean", "max", "first", "last")
ALLOWED = [(choice.text, target) for choice in ENCODER_CHOICES for target in TARGET_CONTEXTS
           if choice.context in TARGET_CONTEXTS[target]]
# t5 and bart train seq2seq's model and loss (seq2seq runs on every encoder below); only their data differs,
# so one transformer encoder each covers them and keeps the matrix 40 runs smaller.
SEQ2SEQ_DATA_ONLY = {"t5": "bert", "bart": "bert"}
MATRIX = [(name, target) for name, target in ALLOWED if SEQ2SEQ_DATA_ONLY.get(target, name) == name]
# The classifier keeps a checkpoint's backbone and drops the rest: which keys a checkpoint has depends on the
# encoder (the backbone) and on the target (its head, a decoder), so each encoder and each target loading once
# covers what a pair can break, at a quarter of the matrix's fine-tuning runs.


def covering(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs, in order, that bring an encoder choice or a target not seen in an earlier one."""
    chosen: list[tuple[str, str]] = []
    for name, target in pairs:
        if all(name != n for n, _ in chosen) or all(target != t for _, t in chosen):
            chosen.append((name, target))
    return chosen


FINE_TUNED = covering(MATRIX)
REFUSED = [(choice.text, target) for choice in ENCODER_CHOICES for target in TARGET_CONTEXTS
           if choice.context not in TARGET_CONTEXTS[target]]
# Whether a pair is refused is check_model's answer (asked for every pair); the refusal as a run meets it, through
# run_stage, once for each encoder choice and each target that has refused pairs.
REFUSED_RUNS = covering(REFUSED)
BOOK_REVIEW = ROOT / "datasets" / "test_data" / "book_review"
SMALL_VOCAB = 100


def head(src, dst, lines):
    dst.write_text("\n".join(src.read_text(encoding="utf-8").split("\n")[:lines]) + "\n", encoding="utf-8")
    return dst


def small(*extra: str) -> list[str]:
    """SMALL sizes, with ``extra`` overrides replacing SMALL's for the same keys."""
    keys = {override.split("=")[0] for override in extra}
    return [override for override in SMALL if override.split("=")[0] not in keys] + list(extra)


def small_backbone(name: str, *extra: str):
    cfg = compose_config([*CHOICES[name].overrides, *small(*extra)])
    torch.manual_seed(0)
    return build_backbone(cfg.embedding, cfg.encoder, SMALL_VOCAB).eval(), cfg


def padded_batch(length=9, pads=(0, 3), seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(5, SMALL_VOCAB, (len(pads), length), generator=gen)
    seg = torch.ones_like(src)
    for row, pad in enumerate(pads):
        src[row, length - pad:] = 0
        seg[row, length - pad:] = 0
    return src, seg


# --- the table --------------------------------------------------------------------------


def test_table_covers_every_encoder_option_and_target():
    options = {path.stem for path in (ROOT / "conf" / "encoder").glob("*.yaml")}
    assert options == {choice.overrides[0].split("=")[1] for choice in ENCODER_CHOICES}
    targets = {path.stem for path in (ROOT / "conf" / "target").glob("*.yaml")}
    assert targets == set(TARGET_CONTEXTS)
    table = combinations_markdown()
    assert all(f"`{' '.join(choice.overrides)}`" in table for choice in ENCODER_CHOICES)
    assert table in (ROOT / "docs" / "pretraining.md").read_text(encoding="utf-8"), \
        "docs/pretraining.md's table differs from uer.combinations.combinations_markdown(): paste the generated one"
    assert len(ALLOWED) + len(REFUSED) == len(ENCODER_CHOICES) * len(TARGET_CONTEXTS)


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_composed_encoder_is_what_the_table_says(name):
    cfg = compose_config([*CHOICES[name].overrides])
    assert encoder_context(cfg.encoder) == CHOICES[name].context


def test_check_model_refuses_exactly_the_pairs_the_table_refuses():
    targets = {target: compose_config(["stage=pretrain", f"target={target}"]).target for target in TARGET_CONTEXTS}
    for choice in ENCODER_CHOICES:
        cfg = compose_config([*choice.overrides])
        for target, target_cfg in targets.items():
            if (choice.text, target) in REFUSED:
                with pytest.raises(IncompatibleModel, match=f"target={target} needs"):
                    check_model(cfg.embedding, cfg.encoder, target_cfg)
            elif not getattr(TARGETS.get(target), "needs_decoder", False):  # those: with their decoder, the matrix
                check_model(cfg.embedding, cfg.encoder, target_cfg)


@pytest.mark.parametrize("name, target", REFUSED_RUNS)
def test_combination_that_cannot_work_fails_before_any_work(name, target, tmp_path, capsys):
    cfg = compose_config(["stage=pretrain", *CHOICES[name].overrides, f"target={target}", *SMALL, *THREADS,
                          f"pretrain.dataset_path={tmp_path / 'missing'}", f"output_model_path={tmp_path / 'm'}"])
    with pytest.raises(SystemExit) as exc:
        run_stage(cfg)
    assert exc.value.code == 2
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")][0]
    assert f"target={target} needs" in line and "valid combinations" in line and "target=bilm: bigru, bilstm" in line
    assert not (tmp_path / "m").exists()


def test_refusal_via_main_is_one_line_naming_the_valid_combinations(tmp_path):
    proc = run_main(["stage=pretrain", "encoder=lstm", "target=bilm", *SMALL, *THREADS,
                     f"pretrain.dataset_path={tmp_path / 'nothing'}", f"output_model_path={tmp_path / 'm'}"],
                    tmp_path / "run")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "bidirectional=false is causal" in lines[0] and "target=bilm: bigru, bilstm" in lines[0]


def test_word_embedding_needs_an_encoder_that_knows_the_order(capsys, tmp_path):
    for encoder in ("encoder=bert", "encoder=attn", "encoder=synt"):
        cfg = compose_config([encoder, "embedding=word", *SMALL])
        with pytest.raises(UerError, match="no position embedding"):
            check_model(cfg.embedding, cfg.encoder)
        with pytest.raises(UerError, match="no position embedding"):
            build_backbone(cfg.embedding, cfg.encoder, SMALL_VOCAB)
    cfg = compose_config(["stage=finetune", "encoder=bert", "embedding=word", *SMALL, *THREADS,
                          f"finetune.train_path={BOOK_REVIEW / 'train.tsv'}", f"output_model_path={tmp_path}"])
    with pytest.raises(SystemExit):
        run_stage(cfg)
    assert "embedding=word has no position embedding" in capsys.readouterr().err
    for overrides in (["encoder=lstm"], ["encoder=cnn"], ["encoder=lstm", "embedding=word_pos_seg"]):
        cfg = compose_config([*overrides, *SMALL])
        check_model(cfg.embedding, cfg.encoder)


def test_cls_target_refuses_first_pooling_on_a_causal_encoder():
    cfg = compose_config(["encoder=gru", "target=cls", "target.pooling=first", *SMALL])
    with pytest.raises(UerError, match="target.pooling=first"):
        check_model(cfg.embedding, cfg.encoder, cfg.target)
    cfg = compose_config(["encoder=bigru", "target=cls", "target.pooling=first", *SMALL])
    check_model(cfg.embedding, cfg.encoder, cfg.target)  # the backward stack sees everything at position 0


# --- encoders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_padding_does_not_reach_real_positions(name):
    backbone, _ = small_backbone(name)
    src, seg = padded_batch()
    batched = backbone(src, seg)
    alone = backbone(src[1:, :6], seg[1:, :6])
    torch.testing.assert_close(batched[1:, :6], alone, rtol=1e-4, atol=1e-5)
    empty = torch.zeros_like(src[:1])
    assert torch.isfinite(backbone(torch.cat([src, empty]), torch.cat([seg, empty]))).all()


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_what_each_position_sees(name):
    backbone, cfg = small_backbone(name)
    src, seg = padded_batch(pads=(0,))
    changed = src.clone()
    changed[:, 5] = (changed[:, 5] + 1) % SMALL_VOCAB
    before, after = backbone(src, seg), backbone(changed, seg)
    moved = (after - before).abs().amax(dim=-1)[0] > 1e-6  # which positions the change at 5 reached
    half = cfg.encoder.hidden_size // 2
    context = CHOICES[name].context
    if context == PREFIX:  # all one segment here: the whole input is the prefix
        assert moved.all()
        seg[:, 4:] = 2  # a prefix of 4 positions, then left to right
        before, after = backbone(src, seg), backbone(changed, seg)
        moved = (after - before).abs().amax(dim=-1)[0] > 1e-6
        assert not moved[:5].any() and moved[5:].all()
    elif context == CAUSAL:
        assert not moved[:5].any() and moved[5:].all()
    elif context == STACKS:
        forward = (after - before)[0, :, :half].abs().amax(dim=-1) > 1e-6
        backward = (after - before)[0, :, half:].abs().amax(dim=-1) > 1e-6
        assert not forward[:5].any() and forward[5:].all()
        assert backward[:6].all() and not backward[6:].any()
    else:
        assert moved.all()


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_bf16_autocast_trains(name):
    backbone, _ = small_backbone(name)
    backbone.train()
    src, seg = padded_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = backbone(src, seg)
    hidden.float().pow(2).mean().backward()
    assert torch.isfinite(hidden.float()).all()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_classifier_with_every_pooling(name):
    from uer.tasks.classifier import ClassifierModel

    src, seg = padded_batch()
    for pooling in POOLINGS:
        backbone, _ = small_backbone(name)
        model = ClassifierModel(backbone, 3, pooling).train()
        out = model({"src": src, "seg": seg, "label": torch.tensor([0, 2])})
        out.loss.backward()
        assert torch.isfinite(out.loss) and model.predict({"src": src, "seg": seg}).shape == (2, 3)
        assert all(p.grad is not None for p in backbone.parameters())


def test_sizes_of_the_original_models():
    def built(*overrides):
        cfg = compose_config(list(overrides))
        return cfg, build_backbone(cfg.embedding, cfg.encoder, 21128)

    cfg, lstm = built("encoder=lstm")
    assert (cfg.embedding.type, cfg.model.emb_size, cfg.model.hidden_size, cfg.model.layers_num) == (
        "word", 512, 1024, 2)
    assert lstm.encoder.rnn.hidden_size == 1024 and lstm.encoder.rnn.num_layers == 2
    cfg, bilstm = built("encoder=bilstm")
    assert bilstm.encoder.rnn_forward.hidden_size == bilstm.encoder.rnn_backward.hidden_size == 768
    cfg, gated = built("encoder=gatedcnn", "size=gatedcnn_13")
    assert (cfg.encoder.hidden_size, cfg.encoder.layers_num, cfg.encoder.kernel_size) == (1268, 13, 4)
    assert len(gated.encoder.conv) == 12
    cfg = compose_config(["encoder=synt"])
    assert (cfg.encoder.synt_type, cfg.encoder.max_seq_length, cfg.encoder.heads_num) == ("dense", 128, 12)
    assert compose_config(["encoder=cnn"]).encoder.block_size == 2
    # An explicit size and embedding on the command line win over the encoder's.
    cfg = compose_config(["encoder=lstm", "size=tiny", "embedding=word_pos"])
    assert (cfg.model.hidden_size, cfg.embedding.type) == (384, "word_pos")


def test_synthesizer_random_and_length_limit():
    backbone, _ = small_backbone("synt", "encoder.synt_type=random", "model.max_seq_length=12")
    src, seg = padded_batch(length=12)
    assert backbone(src, seg).shape == (2, 12, 32)
    with pytest.raises(UerError, match="max_seq_length"):
        backbone(torch.ones(1, 13, dtype=torch.long), torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(UerError, match="synt_type"):
        small_backbone("synt", "encoder.synt_type=nope")


def test_odd_hidden_size_for_two_directions_is_a_user_error():
    with pytest.raises(UerError, match="must be even"):
        small_backbone("bilstm", "model.hidden_size=33")


# --- UER-format keys ----------------------------------------------------------------------


@pytest.mark.parametrize("name, keys", [
    ("lstm", ["encoder.rnn.weight_ih_l0", "encoder.rnn.weight_hh_l1", "encoder.rnn.bias_ih_l1",
              "embedding.layer_norm.gamma", "embedding.word_embedding.weight"]),
    ("gru with bidirectional=true", ["encoder.rnn.weight_ih_l0_reverse", "encoder.rnn.bias_hh_l1_reverse"]),
    ("bilstm", ["encoder.rnn_forward.weight_ih_l0", "encoder.rnn_backward.weight_hh_l1"]),
    ("attn", ["encoder.self_attn.1.linear_layers.2.weight", "encoder.self_attn.0.final_linear.bias"]),
    ("synt", ["encoder.transformer.1.self_attn.dense_2.weight", "encoder.transformer.0.layer_norm_2.beta"]),
])
def test_uer_format_names_and_round_trip(name, keys, tmp_path):
    backbone, cfg = small_backbone(name)
    path = tmp_path / "model.bin"
    save_uer_bin(backbone, path, backbone_prefix="")
    saved = torch.load(path, weights_only=True)
    assert set(keys) <= set(saved)
    assert not any("position_embedding" in key or "segment_embedding" in key for key in saved) or \
        cfg.embedding.type != "word"
    assert set(from_uer_state_dict(to_uer_state_dict(backbone.state_dict(), ""), "")) == set(backbone.state_dict())
    torch.manual_seed(5)
    other = build_backbone(cfg.embedding, cfg.encoder, SMALL_VOCAB).eval()
    report = load_into_model(other, from_uer_state_dict(saved, backbone_prefix=""))
    assert not report.missing and not report.unexpected
    src, seg = padded_batch()
    torch.testing.assert_close(other(src, seg), backbone(src, seg))


# --- targets ------------------------------------------------------------------------------


def test_bilm_target_predicts_next_and_previous_token_from_the_two_halves():
    cfg = compose_config(["encoder=bilstm", "target=bilm", *small("model.emb_size=16")])
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, SMALL_VOCAB).eval()
    assert model.target.output_layer.weight is model.backbone.embedding.word_embedding.weight  # E == H/2: tied
    src, seg = padded_batch(pads=(0, 3))
    forward = torch.full_like(src, -100)
    backward = torch.full_like(src, -100)
    forward[:, :-1] = src[:, 1:]
    backward[:, 1:] = src[:, :-1]
    forward[seg == 0] = -100
    backward[seg == 0] = -100
    forward[1, 5] = -100  # the last real token of row 1 has no next token
    out = model({"src": src, "seg": seg, "lm_labels": forward, "lm_backward_labels": backward})
    assert set(out.stats) == {"lm_forward_loss", "lm_forward_acc", "lm_backward_loss", "lm_backward_acc"}
    hidden = model.backbone(src, seg)  # one output layer serves both halves
    forward_logits = F.linear(hidden[..., :16], model.target.output_layer.weight, model.target.output_layer.bias)
    backward_logits = F.linear(hidden[..., 16:], model.target.output_layer.weight, model.target.output_layer.bias)
    reference = (F.cross_entropy(forward_logits.reshape(-1, SMALL_VOCAB), forward.reshape(-1))
                 + F.cross_entropy(backward_logits.reshape(-1, SMALL_VOCAB), backward.reshape(-1)))
    torch.testing.assert_close(out.loss, reference)
    assert out.stats["lm_forward_loss"][1] == int((forward != -100).sum())


def test_cls_target_needs_labels_num():
    cfg = compose_config(["encoder=lstm", "target=cls", *SMALL])
    with pytest.raises(UerError, match="labels_num"):
        build_model(cfg.embedding, cfg.encoder, cfg.target, SMALL_VOCAB)


# --- datasets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(dict(type="bert", vocab_path=str(VOCAB)))


def test_bilm_dataset_batches_hold_both_label_directions(tokenizer, tmp_path):
    corpus = head(ROOT / "corpora" / "book_review.txt", tmp_path / "c.txt", 20)
    build_pretrain_dataset(corpus, tmp_path / "d", tokenizer, "bilm", seq_length=16)
    dataset = PretrainDataset(tmp_path / "d")
    batch = dataset.batch(np.arange(4), 0, 7)
    assert set(batch) == {"src", "seg", "lm_labels", "lm_backward_labels"}
    for row in range(4):
        real = int((batch["seg"][row] != 0).sum())
        src = batch["src"][row, :real]
        assert torch.equal(batch["lm_labels"][row, :real - 1], src[1:])
        assert torch.equal(batch["lm_backward_labels"][row, 1:real], src[:-1])
        assert batch["lm_backward_labels"][row, 0] == -100 and (batch["lm_backward_labels"][row, real:] == -100).all()


def test_cls_dataset_reads_labels_pairs_and_skips_the_header(tokenizer, tmp_path):
    corpus = tmp_path / "cls.txt"
    corpus.write_text("label\ttext_a\n1\t很好看的书\n0\t不好\n\n3\t上半句\t下半句很长很长很长很长很长很长\n",
                      encoding="utf-8")
    build_pretrain_dataset(corpus, tmp_path / "d", tokenizer, "cls", seq_length=12)
    dataset = PretrainDataset(tmp_path / "d")
    assert len(dataset) == 3 and dataset.labels_num() == 4
    batch = dataset.batch(np.arange(3), 0, 7)
    assert batch["cls_labels"].tolist() == [1, 0, 3]
    vocab = tokenizer.vocab
    first = batch["src"][0, :7].tolist()
    assert first[0] == vocab.cls_id and first[-1] == vocab.sep_id and batch["seg"][0].tolist() == [1] * 7 + [0] * 5
    pair, pair_seg = batch["src"][2].tolist(), batch["seg"][2].tolist()
    assert len(pair) == 12 and pair.count(vocab.sep_id) == 2 and pair[-1] == vocab.sep_id
    assert pair_seg == [1] * 5 + [2] * 7  # [CLS] 上半句 [SEP] | 6 of 下半句... [SEP]


@pytest.mark.parametrize("line, fragment", [("x\t好书", ":2"), ("1", ":2"), ("-1\t好", ":2")])
def test_bad_cls_line_names_file_and_line(tokenizer, tmp_path, line, fragment):
    corpus = tmp_path / "cls.txt"
    corpus.write_text(f"0\t好书\n{line}\n", encoding="utf-8")
    with pytest.raises(UerError, match=f"cls.txt{fragment}: a cls corpus line is label<TAB>text"):
        build_pretrain_dataset(corpus, tmp_path / "d", tokenizer, "cls", seq_length=12)
    assert not (tmp_path / "d").exists()


def test_cls_labels_num_comes_from_the_dataset_and_must_cover_it(tokenizer, tmp_path, capsys):
    corpus = head(BOOK_REVIEW / "train.tsv", tmp_path / "c.tsv", 30)
    build_pretrain_dataset(corpus, tmp_path / "d", tokenizer, "cls", seq_length=16)
    args = ["stage=pretrain", "encoder=gru", "target=cls", *SMALL, *THREADS,
            f"pretrain.dataset_path={tmp_path / 'd'}", "pretrain.total_steps=1", "pretrain.batch_size=4",
            f"output_model_path={tmp_path / 'm'}"]
    run_stage(compose_config(args))
    assert load_checkpoint(tmp_path / "m" / "step_1.pt")["config"]["target"]["labels_num"] == 2
    with pytest.raises(SystemExit):
        run_stage(compose_config([*args, "target.labels_num=1", f"output_model_path={tmp_path / 'm2'}"]))
    assert "target.labels_num=1 but dataset" in capsys.readouterr().err


# --- the matrix ---------------------------------------------------------------------------

CORPORA = {"bert": "book_review_bert.txt", "albert": "book_review_bert.txt", "nsp": "book_review_bert.txt",
           "bart": "book_review_bert.txt"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """``datasets[target]``: a tiny dataset per target, built on first use (datasets do not
    depend on the encoder); ``datasets["train"]``: a 4-row classification file."""
    tmp = tmp_path_factory.mktemp("zoo")

    class Datasets(dict):
        def __missing__(self, target):
            if target == "cls":
                corpus = head(BOOK_REVIEW / "train.tsv", tmp / "cls.tsv", 40)
            elif target in ("prefixlm", "seq2seq"):
                corpus = head(ROOT / "datasets" / "test_data" / "parallel" / "train.tsv", tmp / "pairs.tsv", 30)
            else:
                name = CORPORA.get(target, "book_review.txt")
                corpus = head(ROOT / "corpora" / name, tmp / f"{target}.txt", 120 if target in CORPORA else 30)
            run_stage(compose_config(["stage=preprocess", f"target={target}", f"preprocess.corpus_path={corpus}",
                                      f"preprocess.dataset_path={tmp / target}", "preprocess.seq_length=16"]))
            self[target] = tmp / target
            return self[target]

    built = Datasets()
    rows = BOOK_REVIEW.joinpath("train.tsv").read_text(encoding="utf-8").split("\n")
    built["train"] = tmp / "train.tsv"
    built["train"].write_text("\n".join([rows[0], *rows[1:3], *rows[-5:-3]]) + "\n", encoding="utf-8")  # 2 + 2
    return built


LOSSES = {"mlm": {"mlm_loss"}, "bert": {"mlm_loss", "nsp_loss"}, "albert": {"mlm_loss", "sop_loss"},
          "lm": {"lm_loss"}, "bilm": {"lm_forward_loss", "lm_backward_loss"}, "cls": {"cls_loss"},
          "nsp": {"nsp_loss"}, "prefixlm": {"prefixlm_loss"}, "seq2seq": {"seq2seq_loss"}, "t5": {"t5_loss"},
          "bart": {"bart_loss"}}
# An encoder-decoder target: a decoder on each encoder, with relative positions (T5's) since the RNN and CNN
# encoders' embedding has no position embedding for it to share.
TARGET_NEEDS = {"seq2seq": ["decoder=transformer", "decoder.relative_position_buckets=8"],
                "t5": ["decoder=transformer"], "bart": ["decoder=transformer"]}


@pytest.mark.parametrize("name, target", MATRIX)
def test_pretrain_then_finetune(name, target, datasets, tmp_path):
    overrides = [*CHOICES[name].overrides, *SMALL, *THREADS]
    model_dir = tmp_path / "pre"
    run_stage(compose_config(["stage=pretrain", *overrides, f"target={target}", *TARGET_NEEDS.get(target, []),
                              f"pretrain.dataset_path={datasets[target]}", "pretrain.total_steps=2",
                              "pretrain.batch_size=4", "pretrain.report_steps=1", f"output_model_path={model_dir}"]))
    reports = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert {k for k in reports[-1] if k.endswith("_loss")} == LOSSES[target]
    assert all(np.isfinite(v) for r in reports for k, v in r.items() if k.endswith("_loss"))
    pretrained = load_checkpoint(model_dir / "step_2.pt")
    assert pretrained["config"]["target"]["type"] == target
    if (name, target) not in FINE_TUNED:
        return

    pooling = POOLINGS[FINE_TUNED.index((name, target)) % len(POOLINGS)]
    out = tmp_path / "clf"
    score = run_stage(compose_config(["stage=finetune", "task=classifier", f"task.pooling={pooling}",
                                      "task.labels_num=2",
                                      f"pretrained_model_path={model_dir / 'step_2.pt'}", *THREADS,
                                      f"finetune.train_path={datasets['train']}",
                                      f"finetune.dev_path={datasets['train']}", "finetune.batch_size=4",
                                      "finetune.epochs_num=1", "finetune.seq_length=16", f"output_model_path={out}"]))
    assert 0.0 <= score <= 1.0
    tuned = load_checkpoint(out / "best.pt")
    assert tuned["config"]["encoder"] == pretrained["config"]["encoder"]
    backbone = {k: v for k, v in pretrained["model"].items() if k.startswith("backbone.")}
    assert set(backbone) <= set(tuned["model"])
    # The classifier started from the pre-trained backbone: one step moved the weights only a little.
    key = "backbone.embedding.word_embedding.weight"
    assert (tuned["model"][key] - backbone[key]).abs().max() < 0.05
