"""stage=score: a fine-tuned model's task metrics on a labelled file, without training."""

import json

import pytest

from uer.app import run_stage
from uer_testing import ROOT, SMALL, book_review_slices, compose_config, error_lines, expect_user_error, run_main

TEST_DATA = ROOT / "datasets" / "test_data"
DATA = TEST_DATA / "book_review"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=8", "finetune.epochs_num=1",
        "finetune.learning_rate=1e-3", "size=tiny", *SMALL]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("br")
    return book_review_slices(tmp, train=64, dev=24, test=24)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def score(tmp_path, monkeypatch):
    """Run stage=score in-process with its run directory in ``tmp_path``: its return value and its record."""
    def run(*overrides):
        run_dir = tmp_path / "score_run"
        monkeypatch.setenv("UER_RUN_DIR", str(run_dir))
        result = run_stage(compose_config(["stage=score", "hardware.num_threads=1", *overrides]))
        [record] = read_jsonl(run_dir / "results.jsonl")
        return result, record

    return run


@pytest.fixture(scope="module")
def classifier(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    run_stage(compose_config(["task=classifier", f"finetune.train_path={data['train']}",
                              f"finetune.dev_path={data['dev']}", f"output_model_path={out}", *FAST,
                              "finetune.eval_every_steps=3", "finetune.metric=macro_f1"]))
    return out


def test_scores_of_best_pt_on_the_dev_file_are_its_dev_evaluation(classifier, data, score):
    dev = [r for r in read_jsonl(classifier / "results.jsonl") if r["split"] == "dev"]
    best = max(dev, key=lambda r: r["macro_f1"])
    result, record = score(f"score.load_model_path={classifier}", f"score.test_path={data['dev']}")
    assert {k: record[k] for k in ("acc", "macro_f1")} == {k: best[k] for k in ("acc", "macro_f1")}
    assert (record["split"], record["metric"], record["model"]) == ("score", "macro_f1", str(classifier / "best.pt"))
    assert result == best["macro_f1"]  # the model's finetune.metric, for sweepers


def test_last_pt_scores_as_the_last_evaluation(classifier, data, score):
    last = [r for r in read_jsonl(classifier / "results.jsonl") if r["split"] == "dev"][-1]
    _, record = score(f"score.load_model_path={classifier / 'last.pt'}", f"score.test_path={data['dev']}")
    assert (record["acc"], record["macro_f1"]) == (last["acc"], last["macro_f1"])


def test_cross_validated_model_scores_with_its_fold_ensemble(data, tmp_path, score):
    out = tmp_path / "cv"
    run_stage(compose_config(["task=classifier_cv", f"finetune.train_path={data['train']}", "task.folds_num=2",
                              f"finetune.test_path={data['test']}", f"output_model_path={out}", *FAST]))
    test = [r for r in read_jsonl(out / "results.jsonl") if r["split"] == "test"][0]
    _, record = score(f"score.load_model_path={out / 'folds.json'}", f"score.test_path={data['test']}")
    assert (record["acc"], record["macro_f1"]) == (test["acc"], test["macro_f1"])


def test_multi_task_model_scores_the_head_of_the_file_s_dataset(tmp_path, capsys, score):
    out = tmp_path / "mt"
    folders = [TEST_DATA / "book_review", TEST_DATA / "chnsenticorp"]
    run_stage(compose_config(["task=mt_classifier", f"task.dataset_paths=[{folders[0]},{folders[1]}]",
                              f"output_model_path={out}", *FAST]))
    [dev] = [r for r in read_jsonl(out / "results.jsonl") if r["split"] == "dev"]
    _, record = score(f"score.load_model_path={out}", f"score.test_path={folders[1] / 'dev.tsv'}",
                      "score.dataset=1")
    assert (record["acc"], record["macro_f1"]) == (dev["acc_1"], dev["macro_f1_1"])
    cfg = compose_config(["stage=score", f"score.load_model_path={out}", f"score.test_path={folders[1] / 'dev.tsv'}"])
    expect_user_error(capsys, cfg, "score.dataset is not set", "0..1")


def test_refusals_name_the_key(classifier, data, tmp_path, capsys):
    base = ["stage=score", f"score.load_model_path={classifier}"]
    expect_user_error(capsys, compose_config(base), "score.test_path is not set")
    expect_user_error(capsys, compose_config([*base, f"score.test_path={data['dev']}", "score.dataset=0"]),
                      "score.dataset=0", "drop score.dataset")
    expect_user_error(capsys, compose_config([*base, f"score.test_path={DATA / 'test_nolabel.tsv'}"]),
                      str(DATA / "test_nolabel.tsv"))
    expect_user_error(capsys, compose_config(["stage=score", f"score.load_model_path={tmp_path}",
                                              f"score.test_path={data['dev']}"]), "score.load_model_path")


def test_via_main_logs_the_scores_in_its_summary(classifier, data, tmp_path):
    proc = run_main(["stage=score", f"score.load_model_path={classifier}", f"score.test_path={data['test']}"],
                    tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    [record] = read_jsonl(tmp_path / "run" / "results.jsonl")
    summary = [line for line in (proc.stdout + proc.stderr).splitlines() if "score done in" in line]
    assert summary and f"acc {record['acc']:.4f}" in summary[0] and "best.pt" in summary[0], proc.stderr
    assert not error_lines(proc)
