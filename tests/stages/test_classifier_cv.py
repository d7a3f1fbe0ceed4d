"""classifier_cv: stratified folds, one model per fold, out-of-fold features, fold-ensemble inference."""

import json

import numpy as np
import pytest

from uer.io.checkpoint import load_checkpoint
from uer.app import run_stage
from uer.tasks.classifier_cv import assign_folds
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, run_main, slice_file

VIRUS = ROOT / "datasets" / "smp2020-ewect" / "virus" / "train.tsv"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=tiny", *SMALL]
ROWS, FOLDS, LABELS = 120, 3, 6


def cv_cfg(train, out, *extra):
    return compose_config(["stage=finetune", "task=classifier_cv", f"task.folds_num={FOLDS}",
                           f"finetune.train_path={train}", f"output_model_path={out}", *FAST, *extra])


def infer(model_path, test_path, pred_path, *extra):
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={model_path}", f"infer.test_path={test_path}",
                              f"infer.prediction_path={pred_path}", "hardware.num_threads=1", *extra]))
    lines = pred_path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def probs_of(rows, column):
    return np.array([[float(x) for x in row[column].split()] for row in rows])


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return slice_file(VIRUS, tmp_path_factory.mktemp("virus") / "train.tsv", ROWS)


@pytest.fixture(scope="module")
def cv_run(train, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    features = tmp / "not" / "yet" / "oof.npy"  # its directory does not exist yet
    score = run_stage(cv_cfg(train, tmp / "model", f"task.train_features_path={features}"))
    return tmp / "model", features, score


def test_assign_folds_is_stratified_balanced_and_seeded():
    labels = [0, 0, 0, 1, 1, 2]
    folds = assign_folds(labels, 3, seed=7)
    assert sorted(np.bincount(folds).tolist()) == [2, 2, 2]
    assert sorted(folds[:3].tolist()) == [0, 1, 2]  # the three 0s land in three folds
    assert folds[3] != folds[4]  # the two 1s in two
    # Dealing continues across labels: the 1s take the folds after the 0s' (3 % 3 = fold 0 onwards)
    # and the 2 the next one, whatever the seeded order within each label.
    assert sorted(folds[3:5].tolist()) == [0, 1] and folds[5] == 2
    np.testing.assert_array_equal(folds, assign_folds(labels, 3, seed=7))
    big = np.random.default_rng(0).integers(0, 4, size=103)
    a, b = assign_folds(big, 5, seed=1), assign_folds(big, 5, seed=2)
    assert not np.array_equal(a, b)
    assert np.bincount(a).max() - np.bincount(a).min() <= 1
    for label in range(4):
        counts = np.bincount(a[big == label], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_one_model_per_fold_and_mean_scores(cv_run):
    out, _, score = cv_run
    for k in range(FOLDS):
        payload = load_checkpoint(out / f"fold_{k}" / "best.pt")
        assert payload["config"]["task"]["type"] == "classifier_cv"
        assert payload["config"]["task"]["labels_num"] == LABELS
        assert payload["config"]["cv"] == {"fold": k, "folds_num": FOLDS}
        assert payload["model"]["output_layer_2.weight"].shape == (LABELS, 32)
    manifest = json.loads((out / "folds.json").read_text())
    assert manifest["models"] == [f"fold_{k}/best.pt" for k in range(FOLDS)]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    dev = [r for r in records if r["split"] == "dev"]
    assert [(r["fold"], r["epoch"]) for r in dev] == [(k, 1) for k in range(FOLDS)]
    (cv,) = [r for r in records if r["split"] == "cv"]
    assert [r["metric"] for r in (*dev, cv)] == ["acc"] * (FOLDS + 1)  # the metric that picks each fold's best
    for name in ("acc", "macro_f1"):
        assert cv[name] == pytest.approx(np.mean([r[name] for r in dev]))
        assert cv[f"{name}_std"] == pytest.approx(np.std([r[name] for r in dev]))
    assert score == cv["acc"]


def test_out_of_fold_features_in_file_order_from_the_held_out_model(cv_run, train, tmp_path):
    _, features_path, _ = cv_run
    features = np.load(features_path)
    assert features.shape == (ROWS, LABELS) and features.dtype == np.float32
    np.testing.assert_allclose(features.sum(axis=1), 1.0, atol=1e-5)
    assert not list(features_path.parent.glob(".*.tmp"))
    labels = [int(line.split("\t")[0]) for line in train.read_text(encoding="utf-8").splitlines()[1:]]
    folds = assign_folds(labels, FOLDS, seed=7)
    out = cv_run[0]
    for k in range(FOLDS):
        # Fold k's own checkpoint, run over the whole file: its rows of fold k are the features.
        _, rows = infer(out / f"fold_{k}" / "best.pt", train, tmp_path / f"fold{k}.tsv", "infer.output_prob=true")
        probs = probs_of(rows, 1)
        held = folds == k
        np.testing.assert_allclose(features[held], probs[held], atol=1e-4)
        assert not np.allclose(features[~held], probs[~held], atol=1e-4)


def test_infer_with_the_cv_directory_averages_the_folds(cv_run, train, tmp_path):
    out, _, _ = cv_run
    header, rows = infer(out, train, tmp_path / "cv.tsv", "infer.output_prob=true", "infer.output_logits=true")
    assert header == ["label", "logits", "prob"] and len(rows) == ROWS
    folds = [probs_of(infer(out / f"fold_{k}" / "best.pt", train, tmp_path / f"f{k}.tsv",
                            "infer.output_prob=true")[1], 1) for k in range(FOLDS)]
    mean = np.mean(folds, axis=0)
    np.testing.assert_allclose(probs_of(rows, 2), mean, atol=1e-5)
    np.testing.assert_allclose(np.exp(probs_of(rows, 1)), mean, atol=1e-5)  # logits = log mean probability
    assert [int(row[0]) for row in rows] == mean.argmax(axis=1).tolist()
    # The manifest itself works as load_model_path too.
    _, again = infer(out / "folds.json", train, tmp_path / "manifest.tsv")
    assert [row[0] for row in again] == [row[0] for row in rows]


def test_default_features_path_and_test_file_scored_by_the_ensemble(train, tmp_path):
    small = slice_file(VIRUS, tmp_path / "small.tsv", 40)
    score = run_stage(cv_cfg(small, tmp_path / "m", "task.folds_num=2", f"finetune.test_path={small}",
                             "finetune.batch_size=8"))
    assert np.load(tmp_path / "m" / "train_features.npy").shape[0] == 40
    records = [json.loads(line) for line in (tmp_path / "m" / "results.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["dev", "dev", "cv", "test"]
    assert records[-1]["folds_num"] == 2 and 0 <= records[-1]["acc"] <= 1 and score == records[2]["acc"]


@pytest.mark.parametrize("folds, fragment", [(1, "task.folds_num=1"), (ROWS + 1, f"the {ROWS} training rows")])
def test_bad_folds_num(train, tmp_path, capsys, folds, fragment):
    features = tmp_path / "f" / "oof.npy"
    expect_user_error(capsys, cv_cfg(train, tmp_path / "m", f"task.folds_num={folds}",
                                     f"task.train_features_path={features}"), fragment)
    assert not features.exists() and not (tmp_path / "m" / "fold_0").exists()


def test_batch_larger_than_a_fold_training_part(train, tmp_path, capsys):
    expect_user_error(capsys, cv_cfg(train, tmp_path / "m", "task.folds_num=3", "finetune.batch_size=81"),
                      "finetune.batch_size=81", "80 rows a fold trains on")


def test_features_path_that_is_a_directory(train, tmp_path, capsys):
    expect_user_error(capsys, cv_cfg(train, tmp_path / "m", f"task.train_features_path={tmp_path}"),
                      f"task.train_features_path={tmp_path}", "is a directory")


def test_missing_train_path(tmp_path, capsys):
    expect_user_error(capsys, compose_config(["stage=finetune", "task=classifier_cv", *FAST]),
                      "finetune.train_path is not set")


def test_bad_train_row_writes_nothing(train, tmp_path, capsys):
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = tmp_path / "train.tsv"
    bad.write_text("".join(lines[:5]) + "x\t坏标签\n" + "".join(lines[5:]), encoding="utf-8")
    features = tmp_path / "oof.npy"
    expect_user_error(capsys, cv_cfg(bad, tmp_path / "m", f"task.train_features_path={features}"),
                      f"{bad}:6", "not an integer")
    assert not features.exists() and not (tmp_path / "m").exists()


def test_infer_refuses_broken_fold_lists(cv_run, train, tmp_path, capsys):
    out, _, _ = cv_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "folds.json").write_text("{not json", encoding="utf-8")
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "folds.json").write_text(json.dumps({"format": "uer-cv-folds", "models": ["fold_0/best.pt"]}))
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, fragments in ((broken, (str(broken / "folds.json"), "cannot be read")),
                            (missing, (str(missing / "fold_0" / "best.pt"), "not found")),
                            (empty, (f"infer.load_model_path={empty}", "neither best.pt nor folds.json"))):
        cfg = compose_config(["stage=infer", f"infer.load_model_path={path}", f"infer.test_path={train}",
                              f"infer.prediction_path={tmp_path / 'p.tsv'}"])
        expect_user_error(capsys, cfg, *fragments)
        assert not (tmp_path / "p.tsv").exists()


def test_documented_command_via_main(tmp_path):
    """``task=classifier_cv`` alone (it implies stage=finetune) through main.py is a cross-validation, written into
    the run directory's ``model`` when no output_model_path is given; inference reads the folds from there."""
    train = slice_file(VIRUS, tmp_path / "train.tsv", 40)
    out, features = tmp_path / "run" / "model", tmp_path / "virus_oof.npy"
    proc = run_main(["task=classifier_cv", "task.folds_num=2", f"finetune.train_path={train}",
                     f"task.train_features_path={features}", *FAST, "finetune.batch_size=8"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "2-fold cross-validation" in proc.stdout and (out / "folds.json").is_file()
    assert np.load(features).shape == (40, LABELS)
    assert (tmp_path / "run" / "results.jsonl").is_file() and (tmp_path / "run" / "fold_1" / "metrics.jsonl").is_file()
    proc = run_main(["stage=infer", f"infer.load_model_path={out}",
                     f"infer.test_path={train}", f"infer.prediction_path={tmp_path / 'pred.tsv'}"], tmp_path / "r2")
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "pred.tsv").read_text(encoding="utf-8").splitlines()) == 41

