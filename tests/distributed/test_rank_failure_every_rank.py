"""Errors every rank of a multi-process run meets are printed once, and SIGINT ends a multi-process run with one
line (issue 26).  One rank failing alone: test_rank_failure.py."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from rank_failure_testing import BUG, GUARD, run_failing
from uer_testing import ROOT, SMALL, error_lines

pytestmark = pytest.mark.e2e


def test_an_unexpected_error_every_rank_meets_is_one_traceback(tmp_path, mlm_data):
    """A plain bug (a RuntimeError) on every rank: the first failed rank's traceback, printed once; the other
    rank's failure is summed up in the error line, not printed again."""
    proc = run_failing(tmp_path, "stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                       "pretrain.total_steps=20", "pretrain.batch_size=4", failure="every")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback") == 1, proc.stderr[-5000:]
    assert proc.stderr.count(f"RuntimeError: {BUG}") == 1, proc.stderr[-5000:]
    [line] = error_lines(proc)
    first = re.fullmatch(r"error: worker rank ([01]) failed \(exit code 1\); its error is printed above; also "
                         r"failed: rank ([01]) \(the same error\)", line)
    assert first is not None and first[1] != first[2], line


def test_an_error_every_rank_meets_is_printed_once(tmp_path):
    """A dev file every rank reads and refuses: one line, not one per rank (and no line naming a rank)."""
    data = ROOT / "datasets/test_data/book_review"
    dev = tmp_path / "dev.tsv"
    dev.write_text("label\ttext_a\n1\tgood\nx\tbad row\n", encoding="utf-8")
    proc = run_failing(tmp_path, "stage=finetune", "task=classifier", "size=tiny", *SMALL,
                       f"finetune.train_path={data}/train.tsv", f"finetune.dev_path={dev}", "finetune.epochs_num=1",
                       failure=None)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert error_lines(proc) == [f"error: {dev}:3: label 'x' is not an integer; labels are class ids 0, 1, 2, ..., "
                                 "or pass finetune.skip_bad_rows=true to skip such rows"], proc.stderr[-3000:]
    assert proc.stderr.count("label 'x'") == 1, proc.stderr[-3000:]


def test_sigint_to_a_multi_process_run_is_one_line_and_exit_130(tmp_path, mlm_data):
    """The elastic agent turns the signal into its own exception; the run ends as one in a single process does."""
    model = tmp_path / "model"
    cmd = [sys.executable, "main.py", f"hydra.run.dir={tmp_path / 'run'}", "stage=pretrain", "size=tiny", *SMALL,
           f"pretrain.dataset_path={mlm_data}", "pretrain.total_steps=100000", "pretrain.save_checkpoint_steps=5",
           "pretrain.batch_size=4", "hardware.nproc_per_node=2", "hardware.num_threads=1", f"output_model_path={model}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + GUARD
        while not list(model.glob("step_*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    assert [line for line in stderr.splitlines() if not line.startswith("[")] == [
        f"interrupted by SIGINT: the checkpoints saved so far are kept in {model}; the same command with resume=true "
        "continues from the newest"], stderr[-3000:]
