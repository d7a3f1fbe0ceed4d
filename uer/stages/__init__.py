"""Stages and their dispatch: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``.

Each stage module declares its root schema (the whole shape of its run's config, see
:mod:`uer.config.run`), may declare ``outputs(cfg)`` -- where it writes -- and
``prepare(cfg)`` -- checks and decisions made once, in the launching process, before any
worker starts -- and runs in ``run(cfg)``.  A stage stays thin: the training stages train in
the one training session of :mod:`uer.training.session`, and ``stage=finetune`` hands its
run to the runner the task names, looked up by name in the registry
:data:`uer.finetuning.runners.RUNNERS`.

:func:`run_stage` checks the config (:func:`uer.config.validate.check_run_config`), takes
the run's outputs and the run directory (checked writable and locked for the run's whole
life, :mod:`uer.io.outputs`), prepares, then runs in-process or starts the workers of a
multi-process run (:mod:`uer.launch`, which calls :func:`run_in_worker` in each).  A
:class:`~uer.errors.UerError` -- and an OS error no stage expected (a file that vanished)
-- is printed as one line on stderr (no escape codes; a traceback goes to the log file
only) and the process exits with status 2, instead of a traceback.
Inside a sweep (``python main.py -m ...``) a failed job does not end the process: its
error is logged and it returns a :class:`~uer.sweep.FailedJob`, a failed row in the
sweep's results table (:mod:`uer.sweep`), while the other jobs run.  A run that finishes
logs one summary line (:func:`uer.sweep.summary_line`) and, for a training stage, gives its
logger the final numbers (:func:`uer.training.loggers.log_run_end`).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from uer import distributed, launch, sweep
from uer.errors import UerError, one_line, reason
from uer.io.atomic import os_reason
from uer.io.outputs import DIRECTORY, Output, claimed
from uer.paths import model_dir
from uer.progress import is_main_process
from uer.runtime import run_dir

log = logging.getLogger("uer")


@dataclass(frozen=True)
class Stage:
    """A stage: its module (``run``, optional ``prepare``) and its root schema."""

    name: str
    schema: str  # the module's root dataclass

    @property
    def module(self):
        return importlib.import_module(f"uer.stages.{self.name}")

    @property
    def root(self) -> type:
        return getattr(self.module, self.schema)


STAGES = {stage.name: stage for stage in (
    Stage("preprocess", "PreprocessRun"), Stage("pretrain", "PretrainRun"), Stage("finetune", "FinetuneRun"),
    Stage("infer", "InferRun"), Stage("score", "ScoreRun"), Stage("tool", "ToolRun"))}


def run_stage(cfg: DictConfig):
    """Check, prepare and run ``cfg``'s stage; its result (see the module docstring for failures)."""
    from uer.config.config_path import apply_config_path
    from uer.config.overrides import command_line_overrides
    from uer.config.validate import check_run_config

    started = time.perf_counter()
    try:
        check_run_config(cfg)
        apply_config_path(cfg, command_line_overrides())
        launch.check_devices(cfg)
        distributed.adopt_slurm_tasks()
        stage = STAGES[cfg.stage]
        with claimed(outputs(cfg, run_directory=True) if _holds_outputs(cfg, worker=False) else []):
            prepare = getattr(stage.module, "prepare", None)
            if prepare is not None:
                prepare(cfg)
            record_config(cfg)
            result = launch.launch(cfg, run_in_worker) if launch.needed(cfg) else stage.module.run(cfg)
    except UerError as err:
        return _fail(str(err))
    except OSError as err:  # one the stage did not expect (a file that vanished, a write it does not guard)
        return _fail(_os_error_line(err), err)
    except Exception as err:
        if not sweep.in_multirun():
            raise
        log.exception("job failed")  # the traceback goes to this job's log; the sweep goes on
        return sweep.FailedJob(f"{type(err).__name__}: {err}")
    _log_summary(cfg, result, time.perf_counter() - started)
    return result


def run_in_worker(cfg: DictConfig):
    """One rank of a multi-process run: the launching process checked and prepared ``cfg``."""
    try:
        with claimed(outputs(cfg, run_directory=False) if _holds_outputs(cfg, worker=True) else []):
            return STAGES[cfg.stage].module.run(cfg)
    except UerError as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(_os_error_line(err), err)


def outputs(cfg: DictConfig, run_directory: bool) -> list[Output]:
    """Where the run writes: its stage's outputs (``outputs(cfg)`` of the stage module) and the run directory."""
    from hydra.core.hydra_config import HydraConfig

    found = []
    if run_directory and HydraConfig.initialized():
        key = "hydra.sweep.dir" if sweep.in_multirun() else "hydra.run.dir"
        found.append(Output(key, Path(HydraConfig.get().runtime.output_dir), DIRECTORY))
    stage_outputs = getattr(STAGES[cfg.stage].module, "outputs", None)
    return found + (stage_outputs(cfg) if stage_outputs is not None else [])


def _holds_outputs(cfg: DictConfig, worker: bool) -> bool:
    """Whether this process locks the run's outputs: the one process a run has, or the one that starts its
    workers -- but in a run across machines, whose launching processes all run the same command, rank 0."""
    if not is_main_process():
        return False
    if worker:
        return cfg.hardware.nnodes > 1
    return not (launch.needed(cfg) and cfg.hardware.nnodes > 1)


CONFIG_FILE = "config.yaml"


def record_config(cfg: DictConfig) -> None:
    """Write the config the run uses (after preparing: e.g. a starting checkpoint's architecture)
    as ``config.yaml`` in the run directory, beside Hydra's record of what was composed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    from uer.io.atomic import atomic_write

    path = Path(HydraConfig.get().runtime.output_dir) / CONFIG_FILE
    text = OmegaConf.to_yaml(cfg, resolve=True)
    atomic_write(path, lambda handle: handle.write(text))


def _fail(message: str, err: BaseException | None = None):
    """Print ``message`` as the run's one ``error:`` line (its traceback, if any, goes to the log file only)."""
    message = one_line(message)
    log.error(message)
    if err is not None:
        _traceback_to_log_files(err)
    print(f"error: {message}", file=sys.stderr, flush=True)
    if sweep.in_multirun():
        return sweep.FailedJob(message)
    sys.exit(2)


def _os_error_line(err: OSError) -> str:
    return f"{err.filename}: {os_reason(err)}" if err.filename else reason(err)


def _traceback_to_log_files(err: BaseException) -> None:
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "the error above came from:", (),
                            (type(err), err, err.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _log_summary(cfg: DictConfig, result, seconds: float) -> None:
    """The run's last line: its score, wall time and checkpoint (on the process that started it)."""
    if not is_main_process():
        return
    try:
        directory = run_dir(model_dir(cfg))
        facts = sweep.outcome(cfg, result, directory)
        log.info("%s", sweep.summary_line(cfg.stage, facts, seconds))
        if "logger" in cfg:
            from uer.training.loggers import log_run_end

            log_run_end(cfg, facts, directory)
    except Exception as err:  # noqa: BLE001 - a summary must never fail a finished run
        log.warning("could not summarise the run: %s", err)
