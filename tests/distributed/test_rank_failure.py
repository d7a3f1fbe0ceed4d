"""One rank failing alone ends the whole multi-process run promptly, with that rank's own one-line error.

The failure is injected from outside uer: a ``sitecustomize`` on the workers' PYTHONPATH makes rank 1's
trainer raise a UerError (as a bad batch would) at its second step, while rank 0 is in that step's gradient
all-reduce.  Before the fix rank 1's exit barrier paired with rank 0's all-reduce and both waited for the
process-group timeout (30 minutes by default); the subprocess timeout is the guard, not the subject.
An error every rank meets and SIGINT to a multi-process run: test_rank_failure_every_rank.py.
"""

import pytest

from rank_failure_testing import MESSAGE, OOM, run_failing
from uer_testing import ROOT, SMALL, error_lines

pytestmark = pytest.mark.e2e


def assert_ends_with_rank_1s_error(proc):
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert error_lines(proc) == [f"error: {MESSAGE}"], proc.stderr[-3000:]  # once: not again by the launcher
    assert not [line for line in proc.stderr.splitlines() if "[ERROR][rank 0]" in line], proc.stderr[-3000:]


def test_one_rank_failing_in_pretraining_ends_the_run_with_its_error(tmp_path, mlm_data):
    proc = run_failing(tmp_path, "stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                       "pretrain.total_steps=20", "pretrain.batch_size=4", "pretrain.report_steps=1")
    assert_ends_with_rank_1s_error(proc)


def test_one_rank_failing_in_fine_tuning_ends_the_run_with_its_error(tmp_path):
    data = ROOT / "datasets/test_data/book_review"
    proc = run_failing(tmp_path, "stage=finetune", "task=classifier", "size=tiny", *SMALL,
                       f"finetune.train_path={data}/train.tsv", f"finetune.dev_path={data}/dev.tsv",
                       "finetune.epochs_num=1", "finetune.batch_size=16")
    assert_ends_with_rank_1s_error(proc)


def test_an_unexpected_error_on_one_rank_is_its_traceback_alone(tmp_path, mlm_data):
    """An exception uer does not word (an out-of-memory) is printed with its traceback, as in one process; the
    rank whose all-reduce then fails because rank 1 left prints nothing of its own."""
    proc = run_failing(tmp_path, "stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                       "pretrain.total_steps=20", "pretrain.batch_size=4", "pretrain.report_steps=1", failure="oom")
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert proc.stderr.count("Traceback") == 1, proc.stderr[-5000:]
    assert f"torch.OutOfMemoryError: {OOM}" in proc.stderr.splitlines(), proc.stderr[-3000:]
    assert error_lines(proc) == ["error: worker rank 1 failed (exit code 1); its error is printed above"], \
        proc.stderr[-3000:]
    assert "Connection closed" not in proc.stderr, proc.stderr[-3000:]
