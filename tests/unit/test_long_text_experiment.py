"""experiments/long_text/: cut against sliding windows on ChnSentiCorp -- the preset and the scripts agree on the
recipe, and the scores of the long rows come from the predictions as worked by hand."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from experiments_testing import load_script
from uer_testing import ROOT


@pytest.fixture(scope="module")
def common():
    return load_script("long_text", "common")


@pytest.fixture(scope="module")
def runner():
    return load_script("long_text", "uer_long_text")


def test_the_preset_holds_the_recipe_of_the_results_files(common):
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / f"{common.PRESET}.yaml").read_text(encoding="utf-8"))
    model, finetune, task, recipe = preset["model"], preset["finetune"], preset["task"], common.RECIPE
    assert {key: model[key] for key in common.MODEL} == common.MODEL
    assert model["emb_size"] == common.MODEL["hidden_size"]
    assert (finetune["max_steps"], finetune["eval_every_steps"], finetune["batch_size"],
            float(finetune["learning_rate"]), finetune["max_grad_norm"], finetune["seq_length"], finetune["metric"],
            finetune["length_bucketing"]) == \
        (recipe["max_steps"], recipe["eval_every_steps"], recipe["batch_size"], recipe["learning_rate"],
         recipe["max_grad_norm"], recipe["seq_length"], common.BEST_METRIC, False)
    assert (preset["optimizer"]["weight_decay"], float(preset["optimizer"]["eps"]), preset["lr_scheduler"]["warmup"]) \
        == (recipe["weight_decay"], recipe["eps"], recipe["warmup"])
    assert (task["long_text"], task["stride"], task["window_pooling"]) == \
        ("sliding", recipe["stride"], recipe["window_pooling"])
    assert model["max_seq_length"] == finetune["seq_length"] == common.SEQ_LENGTH  # the positions are the windows
    assert all(finetune[f"{split}_path"] == f"datasets/chnsenticorp/{split}.tsv" for split in ("train", "dev", "test"))


def test_accuracy_on_long_and_short_rows_as_worked_by_hand(common):
    gold, predicted, lengths = [1, 0, 1, 1, 0], [1, 1, 1, 0, 0], [10, 70, 64, 65, 200]
    found = common.accuracies(gold, predicted, lengths, 64)
    # long (> 64 tokens): rows 2, 4, 5 -> wrong, wrong, right; short: rows 1, 3 -> both right
    assert found == {"all": pytest.approx(3 / 5), "long": pytest.approx(1 / 3), "short": 1.0}
    with pytest.raises(ValueError, match="5 gold labels, 4 predictions and 5 lengths"):
        common.accuracies(gold, predicted[:4], lengths, 64)


def test_the_lengths_count_cls_and_sep_and_follow_the_file(common):
    lengths = common.token_lengths("test")
    rows = common.labelled_rows("test")
    assert len(lengths) == len(rows) == 1200
    cjk = [index for index, (_, text) in enumerate(rows)
           if all("\u4e00" <= char <= "\u9fff" or char in "，。！" for char in text)]
    assert len(cjk) > 10  # rows of CJK characters and full-width punctuation: one token each, then [CLS] and [SEP]
    assert [lengths[index] for index in cjk] == [len(rows[index][1]) + 2 for index in cjk]


def test_a_prediction_file_gives_its_label_column(common, tmp_path):
    path = tmp_path / "pred.tsv"
    path.write_text("label\tprob\n1\t0.9\n0\t0.8\n", encoding="utf-8")
    assert common.read_predictions(path) == [1, 0]


def test_summary_is_mean_and_sample_std_of_each_accuracy(common):
    runs = [{"dev": 0.8, "test": 0.8, "test_long": 0.7, "test_short": 0.9},
            {"dev": 0.9, "test": 0.82, "test_long": 0.75, "test_short": 0.9}]
    found = common.summary(runs)
    assert found["dev"]["mean"] == pytest.approx(0.85)
    assert found["test_long"]["std"] == pytest.approx(0.05 / 2 ** 0.5)
    assert found["test_short"] == {"mean": 0.9, "n": 2, "std": 0.0}


def finished_run(run_dir, test_acc: float, predicted: list[int]) -> None:
    """A run directory as fine-tuning and ``stage=infer`` leave it: results.jsonl and test predictions."""
    records = [{"split": "dev", "step": 100, "acc": 0.7}, {"split": "dev", "step": 200, "acc": 0.75},
               {"split": "test", "step": 200, "acc": test_acc}]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    (run_dir / "test_predictions.tsv").write_text("label\n" + "".join(f"{label}\n" for label in predicted),
                                                  encoding="utf-8")


def test_a_finished_run_gives_its_entry_from_its_predictions(common, runner, tmp_path):
    gold = [label for label, _ in common.labelled_rows("test")]
    lengths = common.token_lengths("test")
    wrong_long = [1 - label if n > common.SEQ_LENGTH else label for label, n in zip(gold, lengths)]
    long = sum(n > common.SEQ_LENGTH for n in lengths)
    finished_run(tmp_path, 1 - long / len(gold), wrong_long)
    entry = runner.scorer(1)(tmp_path, 3)
    assert entry == {"seed": 3, "best_step": 200, "dev": 0.75, "test": pytest.approx(1 - long / len(gold)),
                     "test_long": 0.0, "test_short": 1.0}
    assert runner.scorer(1)(tmp_path / "absent", 3) is None  # not finished: run it


def test_predictions_that_disagree_with_the_run_are_refused(common, runner, tmp_path):
    gold = [label for label, _ in common.labelled_rows("test")]
    finished_run(tmp_path, 0.5, gold)
    with pytest.raises(ValueError, match="the predictions score 1.0000 on test, the run 0.5000"):
        runner.scorer(1)(tmp_path, 1)


def test_dry_run_prints_both_variants_of_every_seed(runner, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["uer_long_text.py", "--dry-run", "--work", str(tmp_path)])
    runner.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    for line, (variant, seed) in zip(lines, [(v, s) for v in ("cut", "sliding") for s in (1, 2, 3)]):
        assert line.endswith(f"hydra.run.dir={tmp_path / variant / f'seed{seed}'} task.long_text={variant}")
        assert f" experiment=chnsenticorp_sliding seed={seed} hardware.num_threads=1 " in line
    assert not list(tmp_path.iterdir())  # nothing run, nothing written


def test_the_infer_command_predicts_the_test_file_with_the_best_model(runner, tmp_path):
    line = runner.infer_command(tmp_path, 1)
    assert line[1:4] == ["main.py", "stage=infer", f"infer.load_model_path={tmp_path / 'model' / 'best.pt'}"]
    assert f"infer.test_path={ROOT / 'datasets' / 'chnsenticorp' / 'test.tsv'}" in line
    assert f"infer.prediction_path={tmp_path / 'test_predictions.tsv'}" in line
