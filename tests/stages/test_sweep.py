"""Sweeps (`python main.py -m ...`): a results table of every job, failed jobs as rows, an Optuna search."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from uer.outcome import FailedJob
from uer.sweep import collect_rows, job_row, write_tables
from uer.sweep_tables import describe_best
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines

pytestmark = pytest.mark.e2e

DATA = ROOT / "datasets" / "test_data" / "book_review"
# One thread each: the jobs of a sweep run one after another in one process.
FAST = ["stage=finetune", "task=classifier", "size=tiny", *SMALL, "hardware.num_threads=1", "finetune.seq_length=32",
        "finetune.epochs_num=1", "finetune.report_steps=100"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """32 train rows (2 batches of 16), 16 dev, 16 test."""
    tmp = tmp_path_factory.mktemp("sweep_data")
    out = {}
    for name, rows in (("train", 32), ("dev", 16), ("test", 16)):
        lines = (DATA / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[:rows + 1]
        (tmp / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[name] = tmp / f"{name}.tsv"
    return out


def paths(data):
    return [f"finetune.train_path={data['train']}", f"finetune.dev_path={data['dev']}",
            f"finetune.test_path={data['test']}", f"tokenizer.vocab_path={VOCAB}"]


def sweep(args, sweep_dir):
    """``python main.py -m ARGS`` with the sweep directory at ``sweep_dir``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "main.py", "-m", f"hydra.sweep.dir={sweep_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_by_two_sweep_writes_a_four_row_table(data, tmp_path):
    proc = sweep([*FAST, *paths(data), "finetune.learning_rate=1e-4,3e-4", "finetune.batch_size=8,16"],
                 tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert len(rows) == 4
    assert {(float(r["finetune.learning_rate"]), int(r["finetune.batch_size"])) for r in rows} == {
        (1e-4, 8), (1e-4, 16), (3e-4, 8), (3e-4, 16)}
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert 0.0 <= float(row["dev_acc"]) <= 1.0 and 0.0 <= float(row["test_acc"]) <= 1.0
        assert float(row["score"]) == float(row["dev_acc"])  # what finetune returned: the best dev accuracy
        assert float(row["seconds"]) > 0
        assert row["checkpoint"].endswith("best.pt") and Path(row["checkpoint"]).exists()
    best = [r for r in rows if r["best"] == "best"]
    assert len(best) == 1 and float(best[0]["score"]) == max(float(r["score"]) for r in rows)
    # The Markdown table: the same four rows, the best job's number in bold.
    md = (tmp_path / "sweep" / "results.md").read_text(encoding="utf-8")
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    assert len(table) == 4
    assert f"| **{best[0]['job']}** |" in md
    assert "score = dev acc (higher is better)" in md
    # Every job wrote its own model and its own row file; the sweep said which job won.
    assert len({r["checkpoint"] for r in rows}) == 4
    assert len(collect_rows(tmp_path / "sweep")) == 4
    assert f"best: job {best[0]['job']}" in proc.stdout + proc.stderr


def test_a_failing_job_is_a_failed_row_and_the_sweep_goes_on(data, tmp_path):
    # Job 1's batch is larger than the training file (found when the job reads it); jobs 0 and 2 must still run.
    proc = sweep([*FAST, *paths(data), "finetune.learning_rate=1e-4", "finetune.batch_size=16,64,8"],
                 tmp_path / "sweep")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    rows = read_csv(tmp_path / "sweep" / "results.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed"), ("2", "ok")]
    failed = rows[1]
    too_large = "has 32 instances, fewer than one batch of 64"
    assert too_large in failed["error"]
    assert failed["score"] == "" and failed["best"] == "" and failed["checkpoint"] == ""
    assert rows[0]["dev_acc"] and rows[2]["dev_acc"]
    md = (tmp_path / "sweep" / "results.md").read_text(encoding="utf-8")
    assert "| 1 | 64 | failed |" in md and "3 job(s), 1 failed" in md
    # The job's own one-line error, then the sweep's: which job failed and where the table is.
    errors = error_lines(proc)
    assert errors[0].startswith("error: finetune.train_path ") and too_large in errors[0]
    assert errors[-1].startswith("error: 1 of 3 jobs failed (job 1: finetune.train_path ") and too_large in errors[-1]
    assert "results.md" in errors[-1]


def test_in_a_sweep_errors_and_crashes_become_failed_jobs(monkeypatch, capsys):
    """Inside -m, run_stage returns a FailedJob for a user error and for any exception, instead of exiting."""
    import uer.stages.finetune as finetune_stage
    from uer import outcome as outcome_module
    from uer.app import run_stage
    from uer_testing import compose_config

    cfg = compose_config(["stage=finetune"])  # no train_path: a user error
    with pytest.raises(SystemExit) as exc:  # a single run: one line and exit status 2, as before
        run_stage(cfg)
    assert exc.value.code == 2
    monkeypatch.setattr(outcome_module, "in_multirun", lambda: True)
    result = run_stage(cfg)
    assert isinstance(result, FailedJob) and result.error.startswith("finetune.train_path is not set")
    assert capsys.readouterr().err.count("error: finetune.train_path is not set") == 2

    def crash(cfg):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(finetune_stage, "run", crash)
    result = run_stage(compose_config(["stage=finetune"]))
    assert isinstance(result, FailedJob) and result.error == "RuntimeError: CUDA out of memory"
    monkeypatch.setattr(outcome_module, "in_multirun", lambda: False)
    with pytest.raises(RuntimeError):  # a single run keeps its traceback
        run_stage(compose_config(["stage=finetune"]))


def test_optuna_search_of_three_trials_reports_the_best_parameters_and_resumes(data, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[search]'")
    from uer.search import JournalFileStorage

    # The learning-rate range as the preset's header prints it.
    search = ["hparams_search=finetune_optuna", *FAST[1:], *paths(data), "finetune.batch_size=16",
              "finetune.learning_rate=tag(log, interval(5e-6, 5e-4))", "hydra.sweeper.sampler.n_startup_trials=2"]
    proc = sweep([*search, "hydra.sweeper.n_trials=3"], tmp_path / "search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text(encoding="utf-8"))
    # finetune.epochs_num and batch_size are fixed on the command line, so Optuna searches the other two.
    assert set(result["best_params"]) == {"finetune.learning_rate", "model.dropout"}
    assert 5e-6 <= result["best_params"]["finetune.learning_rate"] <= 5e-4
    assert "Best parameters" in proc.stdout + proc.stderr
    rows = read_csv(tmp_path / "search" / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    best = [r for r in rows if r["best"] == "best"]
    assert len(best) == 1 and float(best[0]["score"]) == pytest.approx(result["best_value"])
    # The study is a file of the sweep directory: the same command into that directory, told to extend it, adds
    # a trial to it, numbered after the others, with parameters the first run did not draw.
    proc = sweep([*search, "hydra.sweeper.n_trials=1"], tmp_path / "search")
    assert proc.returncode == 2 and "holds an earlier sweep" in proc.stderr
    proc = sweep([*search, "hydra.sweeper.n_trials=1", "hydra.callbacks.sweep_results.extend=true"],
                 tmp_path / "search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(tmp_path / "search" / "results.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"] and rows[3]["status"] == "ok"
    assert rows[3]["finetune.learning_rate"] not in {r["finetune.learning_rate"] for r in rows[:3]}
    assert JournalFileStorage(str(tmp_path / "search" / "optuna_study.jsonl")).trials_of("finetune") == 4


# ----------------------------------------------------------------------------- the table itself

def row(job, overrides, status="ok", score=None, error=None, **parts):
    return {"job": job, "overrides": overrides, "status": status, "error": error, "score": score, "seconds": 1.5,
            "run_dir": f"/sweep/{job}", "stage": "pretrain", "metric": "loss", "train": parts, "dev": {},
            "test": {}, "epoch": None, "checkpoint": f"/sweep/{job}/model/step_10.pt" if status == "ok" else None,
            "output": None}


def test_table_of_a_loss_marks_the_lowest_and_only_the_varying_overrides(tmp_path):
    rows = [row(0, ["stage=pretrain", "pretrain.learning_rate=1e-4"], score=3.5, mlm_loss=3.5),
            row(1, ["stage=pretrain", "pretrain.learning_rate=1e-3"], score=2.5, mlm_loss=2.5),
            row(2, ["stage=pretrain", "pretrain.learning_rate=1"], status="failed", error="loss | is nan\nat step 3")]
    csv_path, md_path, best = write_tables(tmp_path, rows, "minimize")
    assert best["job"] == 1
    table = read_csv(csv_path)
    assert [r["best"] for r in table] == ["", "best", ""]
    assert "stage" not in table[0] and table[1]["pretrain.learning_rate"] == "1e-3"
    assert table[1]["train_mlm_loss"] == "2.5000"
    md = md_path.read_text(encoding="utf-8")
    assert "(lower is better)" in md and "| **1** |" in md
    assert "loss \\| is nan at step 3" in md  # one table row, whatever the error says


def test_failed_job_is_not_a_number():
    """A search sweeper must count a failed job as failed, never as a score."""
    failed = FailedJob("finetune.learning_rate=-1.0 must be positive")
    with pytest.raises((TypeError, ValueError)):
        float(failed)
    assert "must be positive" in repr(failed)


def test_job_rows_are_plain_json(tmp_path):
    rows = [row(0, ["a=1"], score=1.0)]
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "sweep_job.json").write_text(json.dumps(rows[0]), encoding="utf-8")
    assert collect_rows(tmp_path)[0]["job"] == 0


def finetune_row(job, seed, lr, dev, test, status="ok"):
    ok = status == "ok"
    return {"job": job, "overrides": ["task=classifier", f"seed={seed}", f"finetune.learning_rate={lr}"],
            "status": status, "error": None if ok else "boom", "score": dev if ok else None, "seconds": 2.0,
            "run_dir": f"/sweep/{job}", "stage": "finetune", "metric": "dev acc", "train": {},
            "dev": {"acc": dev} if ok else {}, "test": {"acc": test} if ok else {}, "epoch": 1,
            "checkpoint": None, "output": None,
            "published": [{"split": "test", "metric": "acc", "value": 0.875, "source": "UER-py README"}]}


@pytest.mark.parametrize("named, metric, dev_acc", [(True, "dev macro_f1", "0.5000"), (False, "dev acc", "0.9000")])
def test_a_finetune_row_takes_its_metric_from_the_result_files(tmp_path, named, metric, dev_acc):
    """The metric that picked the best evaluation comes from results.jsonl, not from task code: here macro_f1,
    which the classifier's default (acc) would not pick.  Older files without it: the first score recorded."""
    job_dir = tmp_path / "0"
    job_dir.mkdir()
    evaluations = [{"split": "dev", "epoch": 1, "step": 2, "acc": 0.9, "macro_f1": 0.5},
                   {"split": "dev", "epoch": 2, "step": 4, "acc": 0.5, "macro_f1": 0.7}]
    lines = [json.dumps({**record, "metric": "macro_f1"} if named else record) for record in evaluations]
    (job_dir / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = compose_config(["task=classifier"])
    assert cfg.finetune.metric is None
    config = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}, "job": {"num": 0},
                                         "overrides": {"task": ["task=classifier"]}}})
    job_return = SimpleNamespace(cfg=cfg, _return_value=0.7 if named else 0.9, status=JobStatus.COMPLETED)
    _, md_path, _ = write_tables(tmp_path, [job_row(config, job_return, 1.0)], "maximize")
    assert f"score = {metric} (higher is better)" in md_path.read_text(encoding="utf-8")
    assert read_csv(tmp_path / "results.csv")[0]["dev_acc"] == dev_acc  # the best evaluation by that metric


def test_jobs_differing_only_in_seed_are_one_row_of_mean_std_and_n(tmp_path):
    # lr 1e-4: dev 0.80, 0.82, 0.84 (mean 0.82, sample std 0.02); lr 3e-4: dev 0.90 and a failed job,
    # then 0.70 (mean 0.80 over n=2). Job 3 alone has the best dev score, but the best mean is lr 1e-4's.
    rows = [finetune_row(0, 1, "1e-4", 0.80, 0.70), finetune_row(1, 1, "3e-4", 0.90, 0.72),
            finetune_row(2, 2, "1e-4", 0.82, 0.74), finetune_row(3, 2, "3e-4", 0.0, 0.0, status="failed"),
            finetune_row(4, 3, "1e-4", 0.84, 0.78), finetune_row(5, 3, "3e-4", 0.70, 0.70)]
    csv_path, md_path, best = write_tables(tmp_path, rows, "maximize")
    assert best["jobs"] == [0, 2, 4] and best["n"] == 3
    groups = read_csv(tmp_path / "results_seeds.csv")
    assert [(g["finetune.learning_rate"], g["n"], g["failed"], g["seeds"], g["jobs"], g["best"]) for g in groups] == [
        ("1e-4", "3", "0", "1 2 3", "0 2 4", "best"), ("3e-4", "2", "1", "1 2 3", "1 3 5", "")]
    assert float(groups[0]["dev_acc_mean"]) == pytest.approx(0.82) and float(groups[0]["dev_acc_std"]) == pytest.approx(0.02)
    assert float(groups[0]["test_acc_mean"]) == pytest.approx(0.74) and float(groups[0]["test_acc_std"]) == pytest.approx(0.04)
    assert float(groups[1]["score_mean"]) == pytest.approx(0.80)
    # Published vs ours: the group's mean test accuracy minus the published 0.875.
    assert groups[0]["published_test_acc"] == "0.8750" and groups[0]["difference_test_acc"] == "-0.1350"
    md = md_path.read_text(encoding="utf-8")
    assert "| 1e-4 | **3** | 0.8200 ± 0.0200 | 0.8200 ± 0.0200 | 0.7400 ± 0.0400 | 0.8750 | -0.1350 | 1 2 3 | 0 2 4 | best |" in md
    assert "| 3e-4 | 2 (1 failed) | 0.8000 ± 0.1414 |" in md
    assert "Published test acc: 0.8750 (UER-py README)" in md and "best: jobs 0, 2, 4 (mean)" in md
    # The per-job table still lists every job; the best mark is on the jobs of the best group.
    jobs = read_csv(csv_path)
    assert [r["best"] for r in jobs] == ["best", "", "best", "", "best", ""]
    assert [r["group"] for r in jobs] == ["0", "1", "0", "1", "0", "1"]
    assert jobs[1]["difference_test_acc"] == "-0.1550"
    assert describe_best(best) == "jobs 0, 2, 4 (finetune.learning_rate=1e-4) dev acc 0.8200 ± 0.0200 (n=3)"


def test_one_seed_per_group_has_a_mean_without_std(tmp_path):
    rows = [finetune_row(0, 1, "1e-4", 0.8, 0.7), finetune_row(1, 2, "1e-4", 0.6, 0.5)]
    rows[1]["overrides"][2] = "finetune.learning_rate=3e-4"  # seed and lr change together: groups of one
    write_tables(tmp_path, rows, "maximize")
    groups = read_csv(tmp_path / "results_seeds.csv")
    assert [(g["n"], g["score_mean"], g["score_std"]) for g in groups] == [("1", "0.8000", ""), ("1", "0.6000", "")]


def test_joblib_launcher_runs_two_jobs_at_a_time_with_the_cores_shared_and_seeds_aggregated(data, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[parallel]'")
    from tensorboard_testing import hparams_of

    args = [arg for arg in FAST if not arg.startswith("hardware.num_threads")]  # the launcher sets it
    proc = sweep(["launcher=joblib", *args, *paths(data), "finetune.batch_size=16", "seed=1,2,3"], tmp_path / "s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2," in proc.stdout + proc.stderr
    cores = len(os.sched_getaffinity(0))
    for job in range(3):
        ran = yaml.safe_load((tmp_path / "s" / str(job) / "config.yaml").read_text(encoding="utf-8"))
        assert ran["hardware"]["num_threads"] == max(1, cores // 2) and ran["seed"] == job + 1
        params, _ = hparams_of(tmp_path / "s" / str(job) / "tensorboard")
        assert params["seed"] == job + 1 and params["finetune.epochs_num"] == 1 and params["launcher"] == "joblib"
    rows = read_csv(tmp_path / "s" / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * 3
    (group,) = read_csv(tmp_path / "s" / "results_seeds.csv")
    scores = [float(r["score"]) for r in rows]
    assert group["n"] == "3" and group["seeds"] == "1 2 3" and group["best"] == "best"
    assert float(group["score_mean"]) == pytest.approx(sum(scores) / 3, abs=1e-4)
    assert "± = sample standard deviation" in (tmp_path / "s" / "results.md").read_text(encoding="utf-8")
