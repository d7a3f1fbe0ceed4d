"""Classifier fine-tuning and inference: three starting points, pairs, pooling, bad input."""

import json
import logging

import pytest
import torch

from uer.io.checkpoint import load_checkpoint
from uer.io.uer_format import save_uer_bin
from uer.models import build_backbone, build_model
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tasks import make_task
from uer.tasks.classifier import ClassifierModel
from uer_testing import (ROOT, SMALL, VOCAB, compose_config, error_lines, expect_user_error, run_main,
                         save_model_checkpoint, slice_file)

DATA = ROOT / "datasets" / "test_data" / "book_review"
# One thread: on a shared 2-core machine two spinning torch threads run ~100x slower.
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100"]
WORD_EMB = "backbone.embedding.word_embedding.weight"
LAYER = "backbone.encoder.transformer.0.self_attn.qkv.weight"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A slice of book_review: 64 train rows (4 batches), 24 dev, 24 test."""
    tmp = tmp_path_factory.mktemp("br")
    return {name: slice_file(DATA / f"{name}.tsv", tmp / f"{name}.tsv", rows)
            for name, rows in (("train", 64), ("dev", 24), ("test", 24), ("test_nolabel", 24))}


def finetune_cfg(data, out, *extra, arch=SMALL):
    return compose_config(["stage=finetune", "task=classifier", f"finetune.train_path={data['train']}",
                           f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['test']}",
                           f"output_model_path={out}", *arch, *FAST, *extra])


def infer(model_path, test_path, pred_path, *extra):
    cfg = compose_config(["stage=infer", f"infer.load_model_path={model_path}", f"infer.test_path={test_path}",
                          f"infer.prediction_path={pred_path}", *extra])
    run_stage(cfg)
    lines = pred_path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


@pytest.fixture(scope="module")
def random_init_model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    score = run_stage(finetune_cfg(data, out, "size=tiny"))
    return out, score


def test_random_init_finetune_returns_dev_metric_and_records_results(random_init_model):
    out, score = random_init_model
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    assert records[0]["acc"] == score and 0 <= records[1]["macro_f1"] <= 1
    payload = load_checkpoint(out / "best.pt")
    task = payload["config"]["task"]
    assert (task["type"], task["pooling"], task["labels_num"]) == ("classifier", "first", 2)
    assert payload["config"]["encoder"]["hidden_size"] == 32
    assert payload["vocab"] == build_tokenizer(compose_config([]).tokenizer).identity()
    assert {"output_layer_1.weight", "output_layer_2.weight", WORD_EMB} <= set(payload["model"])
    assert payload["model"]["output_layer_2.weight"].shape == (2, 32)


def test_infer_writes_one_row_per_input_with_logits_and_probs(random_init_model, data, tmp_path):
    out, _ = random_init_model
    header, rows = infer(out / "best.pt", data["test_nolabel"], tmp_path / "pred.tsv",
                         "infer.output_logits=true", "infer.output_prob=true")
    assert header == ["label", "logits", "prob"]
    assert len(rows) == 24
    for label, logits, prob in rows:
        logits = [float(x) for x in logits.split()]
        prob = [float(x) for x in prob.split()]
        assert len(logits) == len(prob) == 2
        assert sum(prob) == pytest.approx(1.0, abs=1e-4)
        assert int(label) == max(range(2), key=lambda k: logits[k])
    # A labelled file works too (the label column is ignored); only "label" without the flags.
    header, rows = infer(out / "best.pt", data["test"], tmp_path / "pred2.tsv")
    assert header == ["label"] and len(rows) == 24


def pretrain_model(cfg):
    tokenizer = build_tokenizer(cfg.tokenizer)
    torch.manual_seed(3)
    return build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab)), tokenizer


def test_from_pt_checkpoint_needs_no_architecture_flags(data, tmp_path):
    arch_cfg = compose_config(["size=tiny", *SMALL, "model.layers_num=1"])
    model, tokenizer = pretrain_model(arch_cfg)
    pt = save_model_checkpoint(tmp_path / "pre.pt", model, arch_cfg)
    # No size/model flags: the composed default is size=base, the checkpoint's config must win.
    score = run_stage(finetune_cfg(data, tmp_path / "clf", f"pretrained_model_path={pt}",
                                   "finetune.learning_rate=1e-12", arch=[]))
    assert 0.0 <= score <= 1.0
    best = load_checkpoint(tmp_path / "clf" / "best.pt")
    assert best["config"]["encoder"]["hidden_size"] == 32 and best["config"]["encoder"]["layers_num"] == 1
    pretrained = model.state_dict()
    for key in (WORD_EMB, LAYER):
        torch.testing.assert_close(best["model"][key], pretrained[key], atol=1e-6, rtol=0)
    assert not any(key.startswith("target.") for key in best["model"])


def test_from_uer_bin_with_architecture_flags(data, tmp_path):
    arch_cfg = compose_config(["size=tiny", *SMALL])
    model, _ = pretrain_model(arch_cfg)
    path = tmp_path / "pre.bin"
    save_uer_bin(model, path)
    run_stage(finetune_cfg(data, tmp_path / "clf", f"pretrained_model_path={path}", "size=tiny",
                           "finetune.learning_rate=1e-12"))
    best = load_checkpoint(tmp_path / "clf" / "best.pt")["model"]
    for key in (WORD_EMB, LAYER):
        torch.testing.assert_close(best[key], model.state_dict()[key], atol=1e-6, rtol=0)


def write_pairs(src, dst, order=("label", "text_a", "text_b")):
    """label, first half, second half of each review, columns in ``order``."""
    lines = src.read_text(encoding="utf-8").splitlines()[1:]
    out = ["\t".join(order)]
    for line in lines:
        label, text = line.split("\t")
        half = max(1, len(text) // 2)
        row = {"label": label, "text_a": text[:half], "text_b": text[half:]}
        out.append("\t".join(row[c] for c in order))
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


def test_pair_input_trains_and_infers(data, tmp_path):
    pairs = {name: write_pairs(data[name], tmp_path / f"{name}.tsv") for name in ("train", "dev", "test")}
    # The header decides where the columns are, not their order.
    pairs["dev"] = write_pairs(data["dev"], tmp_path / "dev_reordered.tsv", ("text_b", "label", "text_a"))
    run_stage(finetune_cfg(pairs, tmp_path / "clf", "size=tiny"))
    assert load_checkpoint(tmp_path / "clf" / "best.pt")["task_info"] == {"text_pair": True, "labels_num": 2}
    _, rows = infer(tmp_path / "clf" / "best.pt", pairs["test"], tmp_path / "pred.tsv")
    assert len(rows) == 24


def test_pair_model_refuses_single_text_input(data, tmp_path, capsys):
    pairs = {name: write_pairs(data[name], tmp_path / f"{name}.tsv") for name in ("train", "dev", "test")}
    pairs["dev"] = data["dev"]
    expect_user_error(capsys, finetune_cfg(pairs, tmp_path / "clf", "size=tiny"), f"{data['dev']}:1", "text_b")


def encoder_for(cfg, pooling="first", info=None, seq_length=32):
    tokenizer = build_tokenizer(cfg.tokenizer)
    task = make_task({"type": "classifier", "pooling": pooling, "labels_num": 3}, tokenizer, seq_length,
                                  info)
    return task, tokenizer


def test_inputs_are_cls_a_sep_b_sep_truncated_and_padded_to_batch_longest(tmp_path):
    cfg = compose_config([])
    task, tok = encoder_for(cfg, seq_length=8)
    path = tmp_path / "pairs.tsv"
    path.write_text("label\ttext_a\ttext_b\n1\t好书\t不错\n0\t一二三四五\t六七八九十\n", encoding="utf-8")
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    cls, sep = tok.vocab.cls_id, tok.vocab.sep_id
    first = data.examples[0]
    assert first.src == [cls, *tok.encode("好书"), sep, *tok.encode("不错"), sep]
    assert first.seg == [1, 1, 1, 1, 2, 2, 2]
    assert len(data.examples[1].src) == 8 and data.examples[1].seg == [1] * 7 + [2]
    batch = task.collate(data.examples)
    assert batch["src"].shape == (2, 8) and batch["label"].tolist() == [1, 0]
    only_short = task.collate(data.examples[:1])
    assert only_short["src"].shape == (1, 7)  # padded to the batch's longest, not to seq_length
    assert batch["seg"][0].tolist() == first.seg + [0]


def test_pooling_variants_differ_and_ignore_padding():
    cfg = compose_config([*SMALL])
    task, tok = encoder_for(cfg)
    torch.manual_seed(0)
    model = ClassifierModel(build_backbone(cfg.embedding, cfg.encoder, len(tok.vocab)), 3, "first").eval()
    short = [tok.vocab.cls_id, *tok.encode("好书"), tok.vocab.sep_id]
    long = [tok.vocab.cls_id, *tok.encode("这本书写得非常好，值得一读"), tok.vocab.sep_id]
    batch = {"src": torch.zeros(2, len(long), dtype=torch.long), "seg": torch.zeros(2, len(long), dtype=torch.long)}
    for row, ids in enumerate((short, long)):
        batch["src"][row, :len(ids)] = torch.tensor(ids)
        batch["seg"][row, :len(ids)] = 1
    alone = {"src": torch.tensor([short]), "seg": torch.ones(1, len(short), dtype=torch.long)}
    outputs = {}
    with torch.no_grad():
        for pooling in ("first", "mean", "max", "last"):
            model.pooling = pooling
            outputs[pooling] = model.predict(batch)
            # Padding must not change a row's result.
            torch.testing.assert_close(outputs[pooling][0], model.predict(alone)[0], atol=1e-5, rtol=1e-5)
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(outputs[a], outputs[b], atol=1e-4), (a, b)


BAD_ROWS = {
    "columns": ("1\t好书\t多余\n", "3 tab-separated fields"),
    "label": ("好\t好书\n", "not an integer"),
    "too_big": ("5\t好书\n", "labels_num=2"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_train_row_is_an_error_with_file_and_line(data, tmp_path, capsys, kind):
    row, fragment = BAD_ROWS[kind]
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    train = tmp_path / "train.tsv"
    train.write_text("".join(lines[:3]) + row + "".join(lines[3:]), encoding="utf-8")
    extra = ["task.labels_num=2"] if kind == "too_big" else []
    cfg = finetune_cfg({**data, "train": train}, tmp_path / "clf", "size=tiny", *extra)
    line = expect_user_error(capsys, cfg, f"{train}:4", fragment, "finetune.skip_bad_rows=true")
    assert not (tmp_path / "clf" / "best.pt").exists(), line


def test_dev_label_unseen_in_train_names_dev_line(data, tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text(data["dev"].read_text(encoding="utf-8") + "2\t新的类别\n", encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "dev": dev}, tmp_path / "clf", "size=tiny"),
                      f"{dev}:26", "task.labels_num=3")


def test_missing_text_a_column_names_the_header(data, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext\n" + "".join(data["train"].read_text(encoding="utf-8").splitlines(True)[1:]),
                     encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "clf", "size=tiny"),
                      f"{train}:1", "'text_a'", "'text'")


def test_skip_bad_rows_skips_and_counts(data, tmp_path, caplog):
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    train = tmp_path / "train.tsv"
    train.write_text("".join(lines[:3]) + "".join(row for row, _ in BAD_ROWS.values()) + "".join(lines[3:]),
                     encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        run_stage(finetune_cfg({**data, "train": train}, tmp_path / "clf", "size=tiny", "task.labels_num=2",
                               "finetune.skip_bad_rows=true"))
    assert f"{train}: skipped 3 bad rows" in caplog.text
    assert (tmp_path / "clf" / "best.pt").exists()


def test_pretrained_checkpoint_brings_its_vocabulary_and_a_conflicting_one_is_refused(data, tmp_path):
    tokens = VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")  # not splitlines: tokens hold U+2028
    tokens[200], tokens[201] = tokens[201], tokens[200]
    other = tmp_path / "vocab.txt"
    other.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    arch_cfg = compose_config(["size=tiny", *SMALL, f"tokenizer.vocab_path={other}"])
    model, tokenizer = pretrain_model(arch_cfg)
    pt = save_model_checkpoint(tmp_path / "pre.pt", model, arch_cfg)
    other.unlink()  # the checkpoint carries its vocabulary: the file is not needed any more
    run_stage(finetune_cfg(data, tmp_path / "clf", f"pretrained_model_path={pt}", arch=[]))
    best = load_checkpoint(tmp_path / "clf" / "best.pt")
    assert best["vocab"] == tokenizer.identity() and best["tokenizer"]["tokens"] == tokens
    # A tokenizer the user names that is not the checkpoint's stops the run, naming the key.
    proc = run_main(["task=classifier", f"finetune.train_path={data['train']}", f"finetune.dev_path={data['dev']}",
                     f"pretrained_model_path={pt}", f"tokenizer.vocab_path={VOCAB}", *FAST], tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = error_lines(proc)[0]
    assert f"pretrained_model_path={pt}" in line and "tokenizer.vocab_path" in line and str(other) in line


def test_documented_commands_via_main(data, tmp_path):
    out = tmp_path / "clf"
    proc = run_main(["stage=finetune", "task=classifier", f"finetune.train_path={data['train']}",
                     f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['test']}",
                     f"output_model_path={out}", "size=tiny", *SMALL, *FAST], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "results.jsonl").is_file() and (tmp_path / "run" / "metrics.jsonl").is_file()
    pred = tmp_path / "pred.tsv"
    proc = run_main(["stage=infer", f"infer.load_model_path={out / 'best.pt'}", f"infer.test_path={data['test']}",
                     f"infer.prediction_path={pred}", "infer.output_prob=true"], tmp_path / "run_infer")
    assert proc.returncode == 0, proc.stderr
    assert len(pred.read_text(encoding="utf-8").splitlines()) == 25


def test_bad_input_via_main_is_one_line_exit_2(data, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n1\t好书\tx\n", encoding="utf-8")
    proc = run_main(["stage=finetune", f"finetune.train_path={train}", f"finetune.dev_path={data['dev']}",
                     f"output_model_path={tmp_path / 'clf'}"], tmp_path / "run")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{train}:2" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
