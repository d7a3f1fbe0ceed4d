"""Sweeps (`python main.py -m ...`): a results table of every job, failed jobs as rows, an Optuna search."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uer.sweep import FailedJob, collect_rows, write_tables
from uer_testing import ROOT, SMALL, VOCAB, error_lines

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
    from uer import sweep as sweep_module
    from uer.stages import run_stage
    from uer_testing import compose_config

    cfg = compose_config(["stage=finetune"])  # no train_path: a user error
    with pytest.raises(SystemExit) as exc:  # a single run: one line and exit status 2, as before
        run_stage(cfg)
    assert exc.value.code == 2
    monkeypatch.setattr(sweep_module, "in_multirun", lambda: True)
    result = run_stage(cfg)
    assert isinstance(result, FailedJob) and result.error.startswith("finetune.train_path is not set")
    assert capsys.readouterr().err.count("error: finetune.train_path is not set") == 2

    def crash(cfg):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(finetune_stage, "run", crash)
    result = run_stage(compose_config(["stage=finetune"]))
    assert isinstance(result, FailedJob) and result.error == "RuntimeError: CUDA out of memory"
    monkeypatch.setattr(sweep_module, "in_multirun", lambda: False)
    with pytest.raises(RuntimeError):  # a single run keeps its traceback
        run_stage(compose_config(["stage=finetune"]))


def test_optuna_search_of_three_trials_reports_the_best_parameters(data, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[search]'")
    proc = sweep(["hparams_search=finetune_optuna", *FAST[1:], *paths(data), "finetune.batch_size=16",
                  "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2"], tmp_path / "search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text(encoding="utf-8"))
    # finetune.epochs_num and batch_size are fixed on the command line, so Optuna searches the other two.
    assert set(result["best_params"]) == {"finetune.learning_rate", "model.dropout"}
    assert 1e-5 <= result["best_params"]["finetune.learning_rate"] <= 1e-3
    assert "Best parameters" in proc.stdout + proc.stderr
    rows = read_csv(tmp_path / "search" / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    best = [r for r in rows if r["best"] == "best"]
    assert len(best) == 1 and float(best[0]["score"]) == pytest.approx(result["best_value"])


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
