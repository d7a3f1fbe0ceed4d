"""Classifier distillation (task.soft_targets): teacher logits in the train file, the mixed loss, bad input."""

import json
import logging
import math

import pytest
import torch

from uer.models import build_backbone
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tasks import make_task as new_task
from uer.tasks.classifier import ClassifierModel
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, slice_file

REVIEWS = ROOT / "datasets" / "test_data" / "book_review"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=tiny", *SMALL]
# Teacher logits by gold label (any fixed numbers far from a fresh head's near-zero outputs).
TEACHER = {"0": "2 -1", "1": "-1.5 2.5"}


def with_logits(src, dst, rows, teacher=TEACHER):
    lines = src.read_text(encoding="utf-8").splitlines()[1:rows + 1]
    out = ["label\ttext_a\tlogits"]
    for line in lines:
        label, text = line.split("\t")
        out.append(f"{label}\t{text}\t{teacher[label]}")
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distil")
    return {"train": with_logits(REVIEWS / "train.tsv", tmp / "train.tsv", 64),
            "dev": slice_file(REVIEWS / "dev.tsv", tmp / "dev.tsv", 16),
            "test_nolabel": slice_file(REVIEWS / "test_nolabel.tsv", tmp / "test_nolabel.tsv", 8)}


def finetune_cfg(data, out, *extra):
    return compose_config(["stage=finetune", "task=classifier", "task.soft_targets=true",
                           f"finetune.train_path={data['train']}", f"finetune.dev_path={data['dev']}",
                           f"output_model_path={out}", *FAST, *extra])


def make_task(soft_targets=True, soft_alpha=0.5, labels_num=None):
    tokenizer = build_tokenizer(compose_config([]).tokenizer)
    cfg = {"type": "classifier", "pooling": "first", "labels_num": labels_num, "soft_targets": soft_targets,
           "soft_alpha": soft_alpha}
    return new_task(cfg, tokenizer, 32)


# ---------------------------------------------------------------- the loss

def test_loss_is_the_hand_computed_mix_of_mse_and_cross_entropy():
    cfg = compose_config([*SMALL])
    model = ClassifierModel(build_backbone(cfg.embedding, cfg.encoder, 100), 2, "first", soft_alpha=0.25)
    # Fixed student logits, so every number below is worked out by hand.
    model.predict = lambda batch: torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    batch = {"src": torch.ones(2, 3, dtype=torch.long), "label": torch.tensor([0, 1]),
             "soft": torch.tensor([[2.0, 0.0], [0.0, 0.0]])}
    out = model(batch)
    mse = ((1 - 2) ** 2 + 0 + 0 + (2 - 0) ** 2) / 4  # 1.25, over all four logits
    ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2  # -log softmax at the gold label
    assert out.loss.item() == pytest.approx(0.25 * mse + 0.75 * ce, rel=1e-6)
    total, count = out.stats["soft_loss"]
    assert count.item() == 2 and (total / count).item() == pytest.approx(mse)
    total, count = out.stats["cls_loss"]
    assert (total / count).item() == pytest.approx(ce, rel=1e-6)


def test_loss_on_a_batch_read_from_a_file(data):
    task = make_task(soft_alpha=0.3)
    train = task.read(data["train"], split="train", labels_num=None, skip_bad_rows=False)
    batch = task.collate(train.examples[:4])
    assert batch["soft"].dtype == torch.float32
    assert batch["soft"].tolist() == [[2, -1] if label == 0 else [-1.5, 2.5] for label in batch["label"].tolist()]
    cfg = compose_config([*SMALL])
    torch.manual_seed(0)
    model = task.build_model(build_backbone(cfg.embedding, cfg.encoder, len(task.tokenizer.vocab)), 2).eval()
    with torch.no_grad():
        logits = model.predict(batch)
        loss = model(batch).loss
    log_probs = torch.log_softmax(logits, dim=-1)
    ce = -sum(log_probs[i, label] for i, label in enumerate(batch["label"].tolist())) / 4
    mse = sum((logits[i, k] - batch["soft"][i, k]) ** 2 for i in range(4) for k in range(2)) / 8
    assert loss.item() == pytest.approx((0.3 * mse + 0.7 * ce).item(), rel=1e-5)


def test_without_soft_targets_the_logits_column_is_ignored(data):
    task = make_task(soft_targets=False)
    train = task.read(data["train"], split="train", labels_num=None, skip_bad_rows=False)
    batch = task.collate(train.examples[:4])
    assert "soft" not in batch
    cfg = compose_config([*SMALL])
    model = task.build_model(build_backbone(cfg.embedding, cfg.encoder, len(task.tokenizer.vocab)), 2)
    assert model.soft_alpha is None and "soft_loss" not in model(batch).stats


def test_labels_num_is_the_number_of_teacher_logits(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("logits\tlabel\ttext_a\n0.1 0.2 0.3\t0\t好书\n1 2 3\t1\t不错\n", encoding="utf-8")
    task = make_task()
    train = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    assert task.labels_num_from(train) == 3  # no label 2 in the file, but the teacher knows 3 classes
    assert train.examples[1].soft == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- training follows the teacher

def test_with_soft_alpha_1_the_student_moves_towards_the_teacher(tmp_path):
    # A teacher that favours class 0 for every review, whatever the gold label: with
    # soft_alpha=1 the labels carry no weight, so the student must follow the teacher.
    teacher = {"0": "2 -1", "1": "1.5 -0.5"}
    data = {"train": with_logits(REVIEWS / "train.tsv", tmp_path / "train.tsv", 64, teacher),
            "dev": slice_file(REVIEWS / "dev.tsv", tmp_path / "dev.tsv", 16),
            "test_nolabel": slice_file(REVIEWS / "test_nolabel.tsv", tmp_path / "test_nolabel.tsv", 8)}
    out = tmp_path / "m"
    run_stage(finetune_cfg(data, out, "task.soft_alpha=1", "finetune.epochs_num=3", "finetune.report_steps=1",
                           "finetune.learning_rate=1e-2", "lr_scheduler.warmup=0"))
    mse = [json.loads(line)["soft_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(mse) == 12  # 64 rows / 16 per batch * 3 epochs, one report per step
    # A fresh head outputs ~0 against teacher logits of mean square ~1.9.
    assert mse[0] > 1.2
    assert sum(mse[-3:]) / 3 < 0.25 * sum(mse[:3]) / 3, mse
    # The distilled model infers from files without a logits column, and predicts as its teacher.
    pred = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={data['test_nolabel']}", f"infer.prediction_path={pred}",
                              "infer.output_logits=true", "hardware.num_threads=1"]))
    rows = [line.split("\t") for line in pred.read_text(encoding="utf-8").splitlines()[1:]]
    assert len(rows) == 8 and {label for label, _ in rows} == {"0"}
    logits = torch.tensor([[float(x) for x in row[1].split()] for row in rows])
    # best.pt is the first epoch's model (a student that always answers 0 ties on dev accuracy
    # afterwards), so it is on its way to the teacher rather than there.
    assert ((logits - torch.tensor([1.75, -0.75])) ** 2).mean() < 0.5 * mse[0]


# ---------------------------------------------------------------- bad input

def test_missing_logits_column_names_file_and_fix(data, tmp_path, capsys):
    train = slice_file(REVIEWS / "train.tsv", tmp_path / "train.tsv", 32)
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "m"), f"{train}:1", "'logits'",
                      "task.soft_targets=false")
    assert not (tmp_path / "m" / "best.pt").exists()


BAD_LOGITS = {
    "count": ("1\t好书\t0.1 0.2 0.3\n", [], "holds 3 values but earlier rows hold 2"),
    "count_vs_labels_num": ("1\t好书\t0.1 0.2 0.3\n", ["task.labels_num=2"],
                            "holds 3 values but labels_num=2"),
    "not_numbers": ("1\t好书\t0.5 abc\n", [], "are not all numbers"),
    "not_finite": ("1\t好书\tnan 1\n", [], "not all finite"),
    "empty": ("1\t好书\t \n", [], "holds 0 values"),
    "label_without_logit": ("2\t好书\t0.5 1\n", [], "label 2 has no teacher logit"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LOGITS))
def test_bad_logits_name_file_and_line(data, tmp_path, capsys, kind):
    row, extra, fragment = BAD_LOGITS[kind]
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    train = tmp_path / "train.tsv"
    train.write_text("".join(lines[:3]) + row + "".join(lines[3:]), encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "m", *extra), f"{train}:4", fragment,
                      "one teacher logit per class", "finetune.skip_bad_rows=true")
    assert not (tmp_path / "m" / "best.pt").exists()


def test_bad_logits_rows_can_be_skipped_and_are_ignored_without_soft_targets(data, tmp_path, caplog):
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    train = tmp_path / "train.tsv"
    bad = [row for row, extra, _ in BAD_LOGITS.values() if not extra and not row.startswith("2")]
    train.write_text("".join(lines[:3]) + "".join(bad) + "".join(lines[3:]), encoding="utf-8")
    task = make_task()
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        read = task.read(train, split="train", labels_num=None, skip_bad_rows=True)
    assert len(read) == 64 and read.skipped == len(bad) == 4
    assert f"{train}: skipped 4 bad rows" in caplog.text
    # Without soft_targets the column is not read at all.
    assert len(make_task(soft_targets=False).read(train, split="train", labels_num=None, skip_bad_rows=False)) == 68


@pytest.mark.parametrize("alpha", ["1.5", "-0.1"])
def test_soft_alpha_outside_0_1_is_refused(data, tmp_path, capsys, alpha):
    expect_user_error(capsys, finetune_cfg(data, tmp_path / "m", f"task.soft_alpha={alpha}"),
                      f"task.soft_alpha={alpha}", "[0, 1]")
