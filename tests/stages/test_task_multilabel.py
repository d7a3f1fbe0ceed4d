"""multilabel: micro/macro F1 against a hand-worked example, reading label sets, fine-tuning at size=smoke
(in-process; main.py for the refused input), inference from the checkpoint alone, bad input."""

import json
import math

import numpy as np
import pytest
import torch

from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.tasks import TaskData, make_task as new_task
from uer.tasks.metrics import multilabel_metrics, multilabel_prf, multilabel_report
from uer.tasks.multilabel import MultilabelExample
from uer.tokenizers import build_tokenizer
from uer_testing import (compose_config, expect_main_error, expect_user_error, finetune_args,
                         synthetic_multilabel_tsv, with_row)

FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=smoke"]


# ---------------------------------------------------------------- metrics, worked by hand

# Four rows, four labels (0..3); label 3 is neither gold nor predicted anywhere.
#   gold  {0,1} {1}   {0,2} {}
#   pred  {0}   {1,2} {2}   {1}
# label 0: TP 1 (row 1), FP 0, FN 1 (row 3)        -> P 1,   R 1/2, F1 2/3
# label 1: TP 1 (row 2), FP 1 (row 4), FN 1 (row 1) -> P 1/2, R 1/2, F1 1/2
# label 2: TP 1 (row 3), FP 1 (row 2), FN 0         -> P 1/2, R 1,   F1 2/3
# micro: TP 3, FP 2, FN 2 -> P = R = F1 = 3/5
# macro: (2/3 + 1/2 + 2/3) / 3 = 11/18; label 3 is left out (counted as 0 it would be 11/24).
# acc (exact match): no row's predicted set is its gold set -> 0.
GOLD = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
PRED = [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0]]


def test_micro_and_macro_f1_match_the_hand_worked_example():
    scores = multilabel_metrics(np.array(GOLD), np.array(PRED))
    assert scores["micro_f1"] == pytest.approx(3 / 5)
    assert scores["macro_f1"] == pytest.approx(11 / 18)
    assert scores["acc"] == 0.0
    # Row 4 predicted empty like its gold set, row 1 completed: 2 of 4 rows exactly right.
    pred = np.array(PRED)
    pred[3, 1], pred[0, 1] = 0, 1
    assert multilabel_metrics(np.array(GOLD), pred)["acc"] == 0.5


def test_a_label_neither_gold_nor_predicted_is_left_out_of_the_macro_mean():
    per_label = multilabel_prf(np.array(GOLD), np.array(PRED))
    assert sorted(per_label) == [0, 1, 2]
    assert per_label[0] == pytest.approx((1, 1 / 2, 2 / 3, 2))
    assert per_label[1] == pytest.approx((1 / 2, 1 / 2, 1 / 2, 2))
    assert per_label[2] == pytest.approx((1 / 2, 1, 2 / 3, 1))
    # A label gold on a row but never predicted scores F1 0 and counts in the mean.
    gold = np.array(GOLD)
    gold[3, 3] = 1
    assert multilabel_metrics(gold, np.array(PRED))["macro_f1"] == pytest.approx((11 / 6) / 4)


def test_report_lists_each_scored_label():
    report = multilabel_report(np.array(GOLD), np.array(PRED))
    assert set(report) == {"per_class"} and sorted(report["per_class"]) == ["0", "1", "2"]
    assert report["per_class"]["1"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})


def test_nothing_gold_or_predicted_scores_zero():
    assert multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3))) == {"micro_f1": 0.0, "macro_f1": 0.0, "acc": 1.0}


def make_task(seq_length=32, **cfg):
    tokenizer = build_tokenizer(compose_config([]).tokenizer)
    options = {"type": "multilabel", "pooling": "first", "labels_num": None, "labels": None, "threshold": 0.5, **cfg}
    return new_task(options, tokenizer, seq_length), tokenizer


def logits_of(probs):
    probs = torch.tensor(probs, dtype=torch.float64)
    return torch.log(probs / (1 - probs)).float()


def test_evaluate_predicts_labels_whose_probability_reaches_the_threshold():
    # PRED as probabilities: .8 where predicted, .6 for row 4's label 1, .5 for row 1's label 1, .1 elsewhere.
    probs = [[.8, .5, .1, .1], [.1, .8, .8, .1], [.1, .1, .8, .1], [.1, .6, .1, .1]]
    examples = [MultilabelExample([101], [1], tuple(np.flatnonzero(row)), line) for line, row in enumerate(GOLD, 2)]
    data = TaskData("x", examples)
    # At 0.5, row 1's label 1 (probability exactly 0.5) is predicted too: it is gold there, so
    # label 1 has TP 2, FP 1, FN 0 (F1 4/5); micro TP 4, FP 2, FN 1 -> 8/11.
    task, _ = make_task()
    scores = task.evaluate([logits_of(probs[:2]), logits_of(probs[2:])], data, 4)
    assert scores["micro_f1"] == pytest.approx(8 / 11)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    assert scores["acc"] == 1 / 4  # row 1 is exactly right
    # At 0.7 the prediction is PRED less row 4's label 1: label 1 has TP 1, FP 0, FN 1 (F1 2/3);
    # micro TP 3, FP 1, FN 2 -> 2/3; macro (2/3 + 2/3 + 2/3) / 3; row 4 (empty) is exactly right.
    task, _ = make_task(threshold=0.7)
    scores = task.evaluate([logits_of(probs)], data, 4)
    assert scores == pytest.approx({"micro_f1": 2 / 3, "macro_f1": 2 / 3, "acc": 1 / 4})
    assert list(scores) == list(task.metrics) == ["micro_f1", "macro_f1", "acc"]


# ---------------------------------------------------------------- reading

def test_read_label_sets_in_any_column_order(tmp_path):
    task, tok = make_task(seq_length=16)
    path = tmp_path / "d.tsv"
    path.write_text("text_a\tlabel\n好书\t2, 0,0\n一般\t\n不错\t1\n", encoding="utf-8")
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    assert [(e.labels, e.line) for e in data.examples] == [((0, 2), 2), ((), 3), ((1,), 4)]
    assert data.examples[0].src == [tok.vocab.cls_id, *tok.encode("好书"), tok.vocab.sep_id]
    assert task.labels_num_from(data) == 3
    task.info["labels_num"] = 3
    assert task.collate(data.examples)["label"].tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


# ---------------------------------------------------------------- fine-tuning and inference

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """:func:`synthetic_multilabel_tsv` files: 48 train, 16 dev, 16 test rows (and the test rows unlabelled)."""
    tmp = tmp_path_factory.mktemp("multilabel")
    return {"train": synthetic_multilabel_tsv(tmp / "train.tsv", 0, 48),
            "dev": synthetic_multilabel_tsv(tmp / "dev.tsv", 48, 16),
            "test": synthetic_multilabel_tsv(tmp / "test.tsv", 64, 16),
            "test_nolabel": synthetic_multilabel_tsv(tmp / "test_nolabel.tsv", 64, 16, labelled=False)}


def finetune(data, out, *extra):
    return finetune_args("multilabel", data, out, *FAST, *extra)


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    """Trained in-process from the documented command's overrides, threshold 0.4 to see it travel with the model
    (main.py's own line and exit status are test_label_outside_the_declared_set_via_main_is_one_line_exit_2's
    subject); outside main.py the run's records (results.jsonl) are written beside the model."""
    out = tmp_path_factory.mktemp("multilabel_model") / "model"
    run_stage(compose_config(finetune(data, out, "task.threshold=0.4")))
    return out, out


def test_finetune_reports_micro_macro_f1_and_per_label_table(model):
    out, run = model
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    for record in records:
        assert all(0 <= record[key] <= 1 for key in ("micro_f1", "macro_f1", "acc"))
        assert set(record["report"]["per_class"]) <= {"0", "1", "2"}
    payload = load_checkpoint(out / "best.pt")
    task = payload["config"]["task"]
    assert (task["type"], task["labels_num"], task["threshold"]) == ("multilabel", 3, 0.4)
    assert payload["model"]["output_layer_2.weight"].shape == (3, 32)


def test_infer_from_the_checkpoint_alone_writes_label_sets_in_input_order(model, data, tmp_path):
    out, _ = model
    pred = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={data['test_nolabel']}", f"infer.prediction_path={pred}",
                              "infer.output_logits=true", "infer.output_prob=true", "hardware.num_threads=1"]))
    lines = pred.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["label", "logits", "prob"] and len(lines) == 17
    for line in lines[1:]:
        labels, logits, probs = line.split("\t")
        logits, probs = [float(x) for x in logits.split()], [float(x) for x in probs.split()]
        assert len(logits) == len(probs) == 3
        assert probs == pytest.approx([1 / (1 + math.exp(-x)) for x in logits], abs=1e-5)
        assert labels == ",".join(str(i) for i, p in enumerate(probs) if p >= 0.4)  # the stored threshold
    # The predictions follow the input rows: scored against the same rows' labels they give the test scores.
    test = [json.loads(line) for line in (model[1] / "results.jsonl").read_text().splitlines()][1]
    gold = [line.split("\t")[0] for line in data["test"].read_text(encoding="utf-8").splitlines()[1:]]
    predicted = [line.split("\t")[0] for line in lines[1:]]
    assert multilabel_metrics(multi_hot(gold), multi_hot(predicted)) == pytest.approx(
        {key: test[key] for key in ("micro_f1", "macro_f1", "acc")})


def multi_hot(fields):
    """Label fields (``0,2``) of three labels as a 0/1 array."""
    return np.array([[str(label) in field.split(",") for label in range(3)] for field in fields])


# ---------------------------------------------------------------- bad input

BAD_ROWS = {
    "undeclared": ("0,5\t好书\n", ["task.labels=[0,1,2]"], "label 5 is not one of task.labels=[0, 1, 2]"),
    "beyond_labels_num": ("3\t好书\n", ["task.labels_num=3"], "label 3 is not below labels_num=3"),
    "not_a_set": ("0 2\t好书\n", [], "label field '0 2' is not class ids separated by commas"),
    "negative": ("0,-1\t好书\n", [], "label field '0,-1' is not class ids separated by commas"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_label_field_names_file_and_line_and_writes_nothing(data, tmp_path, capsys, kind):
    row, options, fragment = BAD_ROWS[kind]
    dev = with_row(data["dev"], tmp_path / "dev.tsv", 5, row)
    out = tmp_path / "m"
    cfg = compose_config(finetune({**data, "dev": dev}, out, *options))
    expect_user_error(capsys, cfg, f"{dev}:5", fragment, "finetune.skip_bad_rows=true")
    assert not out.exists()


def test_training_file_without_any_label_is_refused(data, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n\t好书\n\t一般\n", encoding="utf-8")
    expect_user_error(capsys, compose_config(finetune({**data, "train": train}, tmp_path / "m")), str(train),
                      "no row holds a label")


def test_label_outside_the_declared_set_via_main_is_one_line_exit_2(data, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n0,1\t好书\n2,7\t一般\n", encoding="utf-8")
    out = tmp_path / "m"
    expect_main_error(finetune({**data, "train": train}, out, "task.labels=[0,1,2]"), tmp_path / "run",
                      f"{train}:3", "label 7 is not one of task.labels")
    assert not out.exists()
