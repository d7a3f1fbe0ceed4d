"""A sweep owns its directory: a second sweep into it is refused (at once, or after it finished), an
interrupted sweep says so in its table and exit status, a killed joblib worker is a failed row (issue 26)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uer.io.outputs import LOCK_FILE
from uer_testing import ROOT, SMALL, VOCAB, error_lines

pytestmark = pytest.mark.e2e

DATA = ROOT / "datasets" / "test_data" / "book_review"
# A fine-tuning job that runs until it is stopped (thousands of tiny epochs).
ENDLESS = ["task=classifier", "size=tiny", *SMALL, "finetune.seq_length=16", "finetune.batch_size=16",
           "finetune.epochs_num=100000", "finetune.report_steps=1000", f"finetune.train_path={DATA / 'train.tsv'}",
           f"finetune.dev_path={DATA / 'dev.tsv'}", f"tokenizer.vocab_path={VOCAB}"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def start_sweep(args, sweep_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "main.py", "-m", f"hydra.sweep.dir={sweep_dir}", *args], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_sweep(args, sweep_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", "-m", f"hydra.sweep.dir={sweep_dir}", *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)


def wait_for(condition, what: str, proc: subprocess.Popen, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def hashes(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "main.log"}


def hydra_records(sweep_dir: Path) -> dict:
    """What a second sweep would rewrite: the sweep's and its jobs' Hydra records, the lock, the job folders."""
    return {"files": {name: digest for name, digest in hashes(sweep_dir).items()
                      if "/" not in name or "/.hydra/" in name},
            "entries": sorted(p.name for p in sweep_dir.iterdir())}


def locked_pid(directory: Path):
    try:
        text = (directory / LOCK_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    return int(text.split('"pid": ')[1].split(",")[0]) if '"pid": ' in text else None


def one_error_line(proc, code: int, *fragments) -> str:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + (proc.stdout or "")
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def signalled_sweep(args, sweep_dir, signum, what: str, ready) -> tuple[int, str]:
    """Start a sweep, send it ``signum`` once ``ready(its pid)``; its exit status and stderr."""
    proc = start_sweep(args, sweep_dir)
    try:
        wait_for(lambda: ready(proc.pid), what, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc)
    return proc.returncode, stderr


def test_a_sweep_holds_its_directory_says_it_was_interrupted_and_a_used_directory_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = start_sweep([*ENDLESS, "seed=1,2"], sweep_dir)
    try:
        wait_for(lambda: locked_pid(sweep_dir / "0") is not None, "its first job", first)
        assert locked_pid(sweep_dir) == first.pid  # the sweep's own lock, beside its job's
        before = hydra_records(sweep_dir)
        second = run_sweep([*ENDLESS, "seed=3,4"], sweep_dir)
        one_error_line(second, 2, f"hydra.sweep.dir={sweep_dir} is in use by another run (pid {first.pid}")
        assert hydra_records(sweep_dir) == before  # the first sweep's records (job 0's overrides) not rewritten
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        stop(first)
    assert first.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted by SIGINT: the sweep stopped at job 0 with 0 job(s) finished; its table is {sweep_dir}/results.md"]
    table = (sweep_dir / "results.md").read_text(encoding="utf-8")
    assert "**Interrupted by SIGINT**" in table and "1 job(s), 0 failed, 1 interrupted" in table
    assert "| 0 | interrupted |" in table
    assert not list(sweep_dir.rglob(LOCK_FILE))  # the sweep's and its job's locks released
    # The directory now holds that sweep: a new one into it is refused, and extend cannot help a basic sweep.
    before = hashes(sweep_dir)
    third = run_sweep([*ENDLESS, "finetune.epochs_num=1", "seed=5,6"], sweep_dir)
    one_error_line(third, 2, f"hydra.sweep.dir={sweep_dir} holds an earlier sweep (multirun.yaml, results.md, "
                             "results.csv, 1 job(s))", "choose another hydra.sweep.dir")
    extended = run_sweep([*ENDLESS, "finetune.epochs_num=1", "seed=5,6", "hydra.callbacks.sweep_results.extend=true"],
                         sweep_dir)
    one_error_line(extended, 2, "hydra.callbacks.sweep_results.extend=true cannot add to it with this sweeper",
                   "numbers its jobs from 0 again")
    assert hashes(sweep_dir) == before and not list(sweep_dir.rglob(LOCK_FILE))


def test_a_killed_joblib_worker_is_a_failed_row_not_a_traceback(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[parallel]'")
    sweep_dir = tmp_path / "sweep"
    proc = start_sweep(["launcher=joblib", *ENDLESS, "seed=1,2"], sweep_dir)
    try:
        wait_for(lambda: locked_pid(sweep_dir / "0") not in (None, proc.pid), "job 0 in a worker", proc)
        os.kill(locked_pid(sweep_dir / "0"), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), 1,
                   "2 of 2 jobs failed (job 0: its worker process ended without a result (TerminatedWorkerError")
    rows = (sweep_dir / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and all(",failed," in row for row in rows[1:])
    assert not list(sweep_dir.rglob(LOCK_FILE))  # neither the killed job's nor the one stopped with it


def test_a_joblib_sweep_interrupted_while_its_workers_run_lists_their_jobs_as_interrupted(tmp_path):
    """The jobs run in joblib's worker processes, not in the process the signal stops: each is still a row."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[parallel]'")
    sweep_dir = tmp_path / "sweep"
    code, stderr = signalled_sweep(["launcher=joblib", *ENDLESS, "seed=1,2"], sweep_dir, signal.SIGINT, "both jobs",
                                   lambda pid: all(locked_pid(sweep_dir / job) not in (None, pid) for job in "01"))
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted by SIGINT: the sweep stopped at jobs 0, 1 with 0 job(s) finished; its table is "
        f"{sweep_dir}/results.md"]
    table = (sweep_dir / "results.md").read_text(encoding="utf-8")
    assert "2 job(s), 0 failed, 2 interrupted" in table
    assert "| 0 | 1 | interrupted |" in table and "| 1 | 2 | interrupted |" in table
    assert "| 0 (2 interrupted) |" in table  # the seed group: stopped, not failed
    assert not list(sweep_dir.rglob(LOCK_FILE))  # the locks the stopped workers left are removed


def test_a_sweep_stopped_by_sigterm_exits_143_with_its_table(tmp_path):
    sweep_dir = tmp_path / "sweep"
    code, stderr = signalled_sweep([*ENDLESS, "seed=1,2"], sweep_dir, signal.SIGTERM, "its first job",
                                   lambda pid: locked_pid(sweep_dir / "0") is not None)
    assert code == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted by SIGTERM: the sweep stopped at job 0 with 0 job(s) finished; its table is {sweep_dir}/results.md"]
    assert "**Interrupted by SIGTERM**" in (sweep_dir / "results.md").read_text(encoding="utf-8")
    assert not list(sweep_dir.rglob(LOCK_FILE))
