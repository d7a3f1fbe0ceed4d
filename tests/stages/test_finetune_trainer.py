"""Fine-tuning as a trainer: max_steps, evaluations inside epochs, early stopping, last.pt, resume, refusals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from uer.finetuning.multi_task import InterleavedBatches
from uer.io.checkpoint import load_checkpoint
from uer.app import run_stage
from uer.tasks import get_task, make_task
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, book_review_slices, compose_config, expect_user_error, run_main

DATA = ROOT / "datasets" / "test_data" / "book_review"
# 64 train rows in batches of 8: 8 steps an epoch.
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=8", "finetune.report_steps=1",
        "finetune.learning_rate=1e-3", "size=tiny", *SMALL]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("br")
    return book_review_slices(tmp, train=64, dev=24, test=24)


def args(data, out, *extra):
    return ["task=classifier", f"finetune.train_path={data['train']}", f"finetune.dev_path={data['dev']}",
            f"output_model_path={out}", *FAST, *extra]


def finetune(data, out, *extra):
    return run_stage(compose_config(args(data, out, *extra)))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def dev_records(directory):
    return [r for r in read_jsonl(directory / "results.jsonl") if r["split"] == "dev"]


def assert_same_weights(a, b):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_max_steps_stops_there_and_the_schedule_spans_those_steps(data, tmp_path):
    out = tmp_path / "m"
    finetune(data, out, "finetune.max_steps=5", "finetune.epochs_num=3", "lr_scheduler.warmup=0")
    reports = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in reports] == [1, 2, 3, 4, 5]
    # Linear decay from 1e-3 to 0 over 5 steps (not over 3 epochs of 8 steps).
    assert [r["lr"] for r in reports] == pytest.approx([8e-4, 6e-4, 4e-4, 2e-4, 0.0])
    # An epoch is 8 steps, so the only evaluation is the one at the last step.
    assert [(r["step"], r["epoch"]) for r in dev_records(out)] == [(5, 0.62)]
    last = load_checkpoint(out / "last.pt")
    assert last["trainer"]["step"] == 5 and last["trainer"]["best"]["step"] == 5
    assert (out / "best.pt").is_file()


def test_eval_every_steps_adds_evaluations_inside_epochs_and_best_pt_is_the_best_of_them(data, tmp_path):
    out = tmp_path / "m"
    finetune(data, out, "finetune.eval_every_steps=3", "finetune.epochs_num=2")
    records = dev_records(out)
    assert [r["step"] for r in records] == [3, 6, 8, 9, 12, 15, 16]
    assert [r["epoch"] for r in records if r["step"] in (8, 16)] == [1, 2]
    best = max(records, key=lambda r: r["acc"])  # the first of equal scores: a later one must beat it
    state = load_checkpoint(out / "last.pt")["trainer"]
    assert (state["best"]["step"], state["best"]["score"]) == (best["step"], best["acc"])
    assert state["evaluations"] == records


def test_early_stopping_counts_evaluations_without_improvement(data, tmp_path):
    out = tmp_path / "m"
    # A learning rate this small leaves every prediction as it was: no evaluation beats the first.
    finetune(data, out, "finetune.learning_rate=1e-12", "finetune.eval_every_steps=1",
             "finetune.early_stopping_patience=2", "finetune.report_steps=100")
    assert [r["step"] for r in dev_records(out)] == [1, 2, 3]
    state = load_checkpoint(out / "last.pt")["trainer"]
    assert state["step"] == 3 and state["best"]["step"] == 1 and state["best"]["stale"] == 2
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [3]  # the stopped run reports its steps


def test_a_fresh_run_refuses_an_earlier_run_s_models(data, tmp_path, capsys):
    out = tmp_path / "m"
    finetune(data, out, "finetune.max_steps=2")
    before = (out / "best.pt").read_bytes()
    expect_user_error(capsys, compose_config(args(data, out, "finetune.max_steps=2")), str(out), "best.pt",
                      "resume=true")
    assert (out / "best.pt").read_bytes() == before
    expect_user_error(capsys, compose_config(args(data, tmp_path / "empty", "resume=true")), "resume=true",
                      "no last.pt")


def test_a_task_naming_an_unregistered_runner_stops_before_training(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(get_task("classifier"), "finetune_runner", "uer.finetuning.single")
    expect_user_error(capsys, compose_config(args(data, tmp_path / "m")), "unknown fine-tuning runner",
                      "'uer.finetuning.single'", "cross_validation, multi_task, single")
    assert not (tmp_path / "m").exists()


def test_resume_refuses_a_changed_setting_unless_allowed_and_then_trains_on(data, tmp_path, capsys, caplog):
    out = tmp_path / "m"
    finetune(data, out, "finetune.max_steps=4")
    expect_user_error(capsys, compose_config(args(data, out, "finetune.max_steps=4", "finetune.batch_size=16",
                                                  "resume=true")),
                      "finetune.batch_size: checkpoint 8, now 16", "resume_allow_changes=[finetune.batch_size]")
    with caplog.at_level("INFO"):
        finetune(data, out, "finetune.max_steps=4", "resume=true")
    assert "nothing to train" in caplog.text
    assert [r["step"] for r in dev_records(out)] == [4]
    finetune(data, out, "finetune.max_steps=6", "resume=true", "resume_allow_changes=[finetune.max_steps]")
    assert load_checkpoint(out / "last.pt")["trainer"]["step"] == 6
    assert [r["step"] for r in dev_records(out)] == [4, 6]


def test_resume_refuses_changed_training_data(data, tmp_path, capsys):
    out = tmp_path / "m"
    finetune(data, out, "finetune.max_steps=2")
    train = tmp_path / "train.tsv"
    text = data["train"].read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join([text[0], *text[2:], text[1]]) + "\n", encoding="utf-8")  # same rows, reordered
    cfg = compose_config(args(data, out, "finetune.max_steps=2", "resume=true", f"finetune.train_path={train}"))
    expect_user_error(capsys, cfg, "dataset", "resume_allow_changes=[dataset]")


def main_cmd(run_dir, *overrides):
    return [sys.executable, "main.py", f"hydra.run.dir={run_dir}", *overrides]


@pytest.mark.e2e
def test_killed_fine_tune_resumes_to_the_uninterrupted_run_s_weights(data, tmp_path):
    """A real SIGKILL mid-run; ``resume=true`` then ends with exactly the weights, best and records of a run never
    stopped: dropout's random stream, the batch position inside an epoch and the best-so-far all continue."""
    common = [*args(data, "OUT", "finetune.epochs_num=5", "finetune.eval_every_steps=3", "model.dropout=0.1",
                    "finetune.report_steps=100")]
    total = 40

    def overrides(out):
        return [arg.replace("OUT", str(out)) for arg in common]

    whole, split = tmp_path / "whole", tmp_path / "split"
    run_stage(compose_config(overrides(whole)))  # in-process: the run never stopped (its records land in whole)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    victim = subprocess.Popen(main_cmd(tmp_path / "run_killed", *overrides(split)), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (split / "last.pt").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read().decode()[-2000:]
    stopped_at = load_checkpoint(split / "last.pt")["trainer"]["step"]
    assert 0 < stopped_at < total, stopped_at

    proc = run_main([*overrides(split), "resume=true"], tmp_path / "run_resumed")
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from step {stopped_at}" in proc.stdout + proc.stderr
    for name in ("best.pt", "last.pt"):
        assert_same_weights(load_checkpoint(whole / name), load_checkpoint(split / name))
    a, b = load_checkpoint(whole / "last.pt")["trainer"], load_checkpoint(split / "last.pt")["trainer"]
    assert a["step"] == b["step"] == total and a["best"] == b["best"] and a["data"] == b["data"]
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    # The resumed run's directory holds every evaluation, the earlier ones carried over from last.pt.
    assert dev_records(tmp_path / "run_resumed") == dev_records(whole)
    assert len(dev_records(whole)) == len({*range(3, total + 1, 3), *range(8, total + 1, 8)})


def test_cross_validation_resumes_after_its_finished_folds(tmp_path, data):
    common = ["task=classifier_cv", f"finetune.train_path={data['train']}", "task.folds_num=2",
              f"finetune.test_path={data['test']}", *FAST, "finetune.epochs_num=1"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_stage(compose_config([*common, f"output_model_path={whole}"]))
    # As if killed during fold 1: fold 0 had finished, fold 1 had written nothing yet.
    shutil.copytree(whole / "fold_0", split / "fold_0")
    run_stage(compose_config([*common, f"output_model_path={split}", "resume=true"]))
    for fold in ("fold_0", "fold_1"):
        assert_same_weights(load_checkpoint(whole / fold / "best.pt"), load_checkpoint(split / fold / "best.pt"))
    assert np.array_equal(np.load(whole / "train_features.npy"), np.load(split / "train_features.npy"))
    records = {name: {r["split"]: r for r in read_jsonl(out / "results.jsonl") if r["split"] != "dev"}
               for name, out in (("whole", whole), ("split", split))}
    assert records["whole"] == records["split"]
    assert (split / "folds.json").read_text() == (whole / "folds.json").read_text()


def test_interleaved_batches_resume_at_the_same_batch():
    task = make_task(compose_config(["task=mt_classifier"]).task, build_tokenizer(compose_config([]).tokenizer), 16)
    datasets = [task.read_dataset(i, DATA.parent / name / "dev.tsv", split="train", labels_num=None,
                                  skip_bad_rows=False) for i, name in enumerate(("book_review", "chnsenticorp"))]

    def batches():
        return InterleavedBatches(task, datasets, 8, 3, [DATA.parent / "a", DATA.parent / "b"])

    straight = batches()
    for _ in range(17):  # into the second epoch (an epoch is 6 + 6 batches)
        straight.next_batch()
    state = straight.state_dict()
    resumed = batches()
    resumed.load_state_dict(state)
    for _ in range(10):
        a, b = straight.next_batch(), resumed.next_batch()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
