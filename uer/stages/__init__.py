"""Stage dispatch: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``.

A multi-process run (``hardware.nproc_per_node * hardware.nnodes > 1``) first starts its
workers (:mod:`uer.launch`), each of which comes back here as one rank.  A
:class:`~uer.errors.UerError` is printed as one line on stderr and the process exits with
status 2, instead of a traceback.  Inside a sweep (``python main.py -m ...``) a failed job
does not end the process: its error is logged and it returns a
:class:`~uer.sweep.FailedJob`, a failed row in the sweep's results table (:mod:`uer.sweep`),
while the other jobs run.  A run that finishes logs one summary line (:func:`uer.sweep.summary_line`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from uer import distributed, launch, sweep
from uer.config.compat import check_stage_config
from uer.errors import UerError
from uer.progress import is_main_process
from uer.runtime import run_dir

STAGES = ("preprocess", "pretrain", "finetune", "infer", "tool")

log = logging.getLogger("uer")


def run_stage(cfg: DictConfig):
    started = time.perf_counter()
    if cfg.stage not in STAGES:
        return _fail(f"stage={cfg.stage} is not a stage; choose one of: {', '.join(STAGES)}")
    module = importlib.import_module(f"uer.stages.{cfg.stage}")
    try:
        check_stage_config(cfg)  # combinations that cannot work fail here, before any work
        distributed.adopt_slurm_tasks()
        if launch.needed(cfg):
            result = launch.launch(cfg)
        else:
            result = module.run(cfg)
    except UerError as err:
        return _fail(str(err))
    except Exception as err:
        if not sweep.in_multirun():
            raise
        log.exception("job failed")  # the traceback goes to this job's log; the sweep goes on
        return sweep.FailedJob(f"{type(err).__name__}: {err}")
    _log_summary(cfg, result, time.perf_counter() - started)
    return result


def _fail(message: str):
    log.error(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    if sweep.in_multirun():
        return sweep.FailedJob(message)
    sys.exit(2)


def _log_summary(cfg: DictConfig, result, seconds: float) -> None:
    """The run's last line: its score, wall time and checkpoint (on the process that started it)."""
    if not is_main_process() or (launch.RUN_DIR_ENV in os.environ and "RANK" in os.environ):
        return  # workers: the process that started them says it
    try:
        model_dir = Path(cfg.output_model_path) if cfg.get("output_model_path") else run_dir(Path.cwd()) / "model"
        facts = sweep.outcome(cfg, result, run_dir(model_dir))
        log.info("%s", sweep.summary_line(cfg.stage, facts, seconds))
    except Exception as err:  # noqa: BLE001 - a summary must never fail a finished run
        log.warning("could not summarise the run: %s", err)
