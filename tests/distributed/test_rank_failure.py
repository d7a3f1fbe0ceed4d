"""One rank failing alone ends the whole multi-process run promptly, with that rank's own one-line error.

The failure is injected from outside uer: a ``sitecustomize`` on the workers' PYTHONPATH makes rank 1's
trainer raise a UerError (as a bad batch would) at its second step, while rank 0 is in that step's gradient
all-reduce.  Before the fix rank 1's exit barrier paired with rank 0's all-reduce and both waited for the
process-group timeout (30 minutes by default); the subprocess timeout is the guard, not the subject.
An error every rank meets is printed once, and SIGINT ends a multi-process run with one line (issue 26).
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from uer_testing import ROOT, SMALL, error_lines

pytestmark = pytest.mark.e2e

MESSAGE = "injected: a corrupt batch on rank 1 at step 2"

OOM = "injected: out of memory on rank 1 at step 2"

BUG = "injected: a bug every rank meets at step 2"

SITECUSTOMIZE = f'''
import os
if "UER_TEST_FAIL_RANK1" in os.environ:  # RANK is set later, when the worker's function starts
    import torch
    from uer.errors import UerError
    from uer.training.trainer import Trainer

    train_step = Trainer.train_step

    def failing_train_step(self, micro_batches):
        if os.environ["UER_TEST_FAIL_RANK1"] == "every" and self.step + 1 == 2:
            raise RuntimeError({BUG!r})
        if os.environ.get("RANK") == "1" and self.step + 1 == 2:
            if os.environ["UER_TEST_FAIL_RANK1"] == "oom":
                raise torch.OutOfMemoryError({OOM!r})
            raise UerError({MESSAGE!r})
        return train_step(self, micro_batches)

    Trainer.train_step = failing_train_step
'''

GUARD = 90  # seconds: a hung run is far longer (the process group's timeout)


def run_failing(tmp_path, *args, failure="uer"):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    if failure is not None:
        env["UER_TEST_FAIL_RANK1"] = failure
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "main.py", f"hydra.run.dir={tmp_path / 'run'}", *args, "hardware.nproc_per_node=2",
           "hardware.num_threads=1", f"output_model_path={tmp_path / 'model'}"]
    # Its own session, so that a hung run's workers are ended with it (the launcher's children outlive a kill).
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # A hang raises TimeoutExpired here (and the test fails); the process group keeps its default timeout.
        stdout, stderr = proc.communicate(timeout=GUARD)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


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
