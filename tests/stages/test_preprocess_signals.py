"""stage=preprocess with worker processes, stopped by SIGINT, SIGTERM or SIGKILL: one line (or none, for
SIGKILL), no orphan worker, no lock that stops the next run (issue 26)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uer_testing import ROOT, VOCAB, error_lines

pytestmark = pytest.mark.e2e

CORPUS = ROOT / "corpora" / "book_review.txt"
SMALL_CORPUS = ROOT / "corpora" / "literature_mini.txt"


def preprocess_args(dataset: Path, dup_factor: int, corpus: Path = CORPUS) -> list[str]:
    # Static masks drawn dup_factor times: seconds of work for the two workers out of the bundled corpus.
    return ["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={dataset}",
            "preprocess.processes_num=2", "preprocess.seq_length=64", f"preprocess.dup_factor={dup_factor}",
            "preprocess.docs_buffer_size=2000", f"tokenizer.vocab_path={VOCAB}"]


def main_py(args, run_dir) -> list[str]:
    return [sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_preprocess_leaves_no_worker_and_no_lock_in_the_way(tmp_path, signum):
    dataset = tmp_path / "data" / "mlm"
    run = subprocess.Popen(main_py(preprocess_args(dataset, dup_factor=40), tmp_path / "run_a"), cwd=ROOT,
                           env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(workers := children(run.pid)) < 2:
            assert run.poll() is None, run.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        time.sleep(0.5)  # both at work on their units
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "orphan workers"
    assert run.returncode == (-signum if signum == signal.SIGKILL else 128 + signum), stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    if signum != signal.SIGKILL:
        assert [line for line in stderr.splitlines() if line.strip()] == [
            f"interrupted by {signum.name}: nothing half-written is kept; run the command again"]
        assert not dataset.parent.exists()  # no dataset, no temporary, no lock: not even the folder made for them
        return
    # The next run into the same place is not stopped by the lock the killed run left (its workers died with it).
    rerun = subprocess.run(main_py(preprocess_args(dataset, 1, SMALL_CORPUS), tmp_path / "run_b"), cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and not error_lines(rerun), rerun.stderr[-3000:]
    assert (dataset / "meta.json").is_file()
    log = (tmp_path / "run_b" / "main.log").read_text(encoding="utf-8")
    assert f"taking over the lock left by pid {run.pid}" in log
    assert sorted(p.name for p in dataset.parent.iterdir()) == ["mlm"]
