"""regression: Pearson and Spearman against hand-worked examples, reading targets, fine-tuning at size=smoke
(in-process; main.py for the refused input), inference from the checkpoint alone, bad input."""

import json
import math

import pytest
import torch

from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.tasks import TaskData, make_task as new_task
from uer.tasks.regression import ScoreExample
from uer.tasks.sentence_embedding import sts_correlations
from uer.tokenizers import build_tokenizer
from uer_testing import (compose_config, expect_main_error, expect_user_error, finetune_args, synthetic_sts,
                         with_row)

FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=2",
        "finetune.report_steps=100", "size=smoke"]


# ---------------------------------------------------------------- metrics, worked by hand

def test_pearson_and_spearman_of_a_swapped_ranking():
    # gold 1..5, pred 2 1 4 3 5: deviations from the mean 3 are -2 -1 0 1 2 and -1 -2 1 0 2;
    # Pearson = (2 + 2 + 0 + 0 + 4) / sqrt(10 * 10) = 0.8.  The values are their own ranks, so
    # Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120 = 0.8 too.
    assert sts_correlations([2, 1, 4, 3, 5], [1, 2, 3, 4, 5]) == pytest.approx({"pearson": 0.8, "spearman": 0.8})


def test_spearman_sees_only_the_order_pearson_the_values():
    # gold 1 2 3, pred 1 2 10: the same order, so Spearman = 1.  Pearson: deviations -1 0 1 and
    # -10/3 -7/3 17/3 -> covariance sum 9, squares 2 and 438/9 -> 9 / sqrt(2 * 438 / 9) = 27 / sqrt(876).
    assert sts_correlations([1, 2, 10], [1, 2, 3]) == pytest.approx({"pearson": 27 / math.sqrt(876), "spearman": 1.0})


def test_spearman_gives_tied_predictions_their_mean_rank():
    # pred 1 1 2 3 ranks 1.5 1.5 3 4 against gold ranks 1 2 3 4: deviations -1 -1 .5 1.5 and
    # -1.5 -.5 .5 1.5 -> 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert sts_correlations([1, 1, 2, 3], [1, 2, 3, 4])["spearman"] == pytest.approx(math.sqrt(0.9))


def make_task(seq_length=32):
    tokenizer = build_tokenizer(compose_config([]).tokenizer)
    return new_task({"type": "regression", "pooling": "first"}, tokenizer, seq_length), tokenizer


def test_evaluate_correlates_the_outputs_in_row_order():
    task, _ = make_task()
    examples = [ScoreExample([101], [1], gold, line) for line, gold in enumerate([1, 2, 3, 4, 5], start=2)]
    outputs = [torch.tensor([[2.0], [1.0]]), torch.tensor([[4.0], [3.0], [5.0]])]
    scores = task.evaluate(outputs, TaskData("x", examples), 1)
    assert scores == pytest.approx({"pearson": 0.8, "spearman": 0.8})
    assert list(scores) == list(task.metrics) == ["spearman", "pearson"]


# ---------------------------------------------------------------- reading

def test_read_targets_and_pairs(tmp_path):
    task, tok = make_task(seq_length=16)
    path = tmp_path / "d.tsv"
    path.write_text("text_b\tlabel\ttext_a\n有人弹吉他\t 4.25 \t男人弹吉他\n切洋葱\t-1e-1\t游泳\n", encoding="utf-8")
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    assert [(e.label, e.line) for e in data.examples] == [(4.25, 2), (-0.1, 3)]
    assert data.examples[1].seg == [1] * 4 + [2] * 4
    assert task.labels_num_from(data) == 1 and task.info == {"text_pair": True}
    assert task.collate(data.examples)["label"].tolist() == pytest.approx([4.25, -0.1])


# ---------------------------------------------------------------- fine-tuning and inference

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Made-up STS-style pairs (:func:`synthetic_sts`): 48 train, 16 dev, 16 test rows."""
    tmp = tmp_path_factory.mktemp("regression")
    return {"train": synthetic_sts(tmp / "train.tsv", 48), "dev": synthetic_sts(tmp / "dev.tsv", 16, start=48),
            "test": synthetic_sts(tmp / "test.tsv", 16, start=64)}


def finetune(data, out, *extra):
    return finetune_args("regression", data, out, *FAST, *extra)


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    """Trained in-process from the documented command's overrides (main.py's own line and exit status are
    test_non_numeric_target_via_main_is_one_line_exit_2's subject); outside main.py the run's records
    (results.jsonl) are written beside the model."""
    out = tmp_path_factory.mktemp("regression_model") / "model"
    run_stage(compose_config(finetune(data, out)))
    return out, out


def test_finetune_reports_pearson_and_spearman_and_saves_one_output(model):
    out, run = model
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("dev", 2), ("test", records[-1]["epoch"])]
    for record in records:
        assert -1 <= record["pearson"] <= 1 and -1 <= record["spearman"] <= 1
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["task"]["type"] == "regression" and payload["task_info"]["labels_num"] == 1
    assert payload["model"]["output_layer_2.weight"].shape == (1, 32)


def test_infer_from_the_checkpoint_alone_writes_one_score_per_input_row(model, data, tmp_path):
    out, run = model
    pred = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out}", f"infer.test_path={data['test']}",
                              f"infer.prediction_path={pred}", "hardware.num_threads=1"]))
    lines = pred.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "score" and len(lines) == 17
    scores = [float(line) for line in lines[1:]]
    # In input order: against the same rows' targets they give the test scores fine-tuning recorded.
    gold = [float(line.split("\t")[2]) for line in data["test"].read_text(encoding="utf-8").splitlines()[1:]]
    test = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()][-1]
    assert sts_correlations(scores, gold) == pytest.approx({"pearson": test["pearson"], "spearman": test["spearman"]},
                                                       abs=1e-4)


# ---------------------------------------------------------------- bad input

BAD_ROWS = {
    "not_a_number": ("好书\t一本好书\t很好\n", "label '很好' is not a number"),
    "not_finite": ("好书\t一本好书\tnan\n", "label 'nan' is not a finite number"),
    "empty": ("好书\t一本好书\t\n", "label '' is not a number"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_target_names_file_and_line_and_writes_nothing(data, tmp_path, capsys, kind):
    row, fragment = BAD_ROWS[kind]
    dev = with_row(data["dev"], tmp_path / "dev.tsv", 5, row)
    out = tmp_path / "m"
    expect_user_error(capsys, compose_config(finetune({**data, "dev": dev}, out)), f"{dev}:5", fragment,
                      "finetune.skip_bad_rows=true")
    assert not out.exists()


def test_file_with_one_target_for_every_row_is_refused(data, tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text("label\ttext_a\ttext_b\n2.5\t好书\t一本好书\n2.5\t一般\t一本书\n", encoding="utf-8")
    expect_user_error(capsys, compose_config(finetune({**data, "dev": dev}, tmp_path / "m")), str(dev),
                      "every row's target is 2.5")


def test_non_numeric_target_via_main_is_one_line_exit_2(data, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n1.5\t好书\nhigh\t一般\n", encoding="utf-8")
    out = tmp_path / "m"
    expect_main_error(finetune({**data, "train": train}, out), tmp_path / "run", f"{train}:3",
                      "label 'high' is not a number")
    assert not out.exists()
