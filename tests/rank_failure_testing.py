"""A multi-process run whose rank 1 fails, for tests/distributed/test_rank_failure*.py.

The failure is injected from outside uer: a ``sitecustomize`` on the workers' PYTHONPATH makes rank 1's
trainer raise a UerError (as a bad batch would) at its second step, while rank 0 is in that step's gradient
all-reduce (``failure="oom"``: an out-of-memory instead; ``"every"``: a plain bug on every rank).
"""

import os
import signal
import subprocess
import sys

from uer_testing import ROOT

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
