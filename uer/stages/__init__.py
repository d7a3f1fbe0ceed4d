"""Stages and their dispatch: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``.

Each stage module declares its root schema (the whole shape of its run's config, see
:mod:`uer.config.run`), may declare ``prepare(cfg)`` -- checks and decisions made once, in
the launching process, before any worker starts -- and runs in ``run(cfg)``.

:func:`run_stage` checks the config (:func:`uer.config.validate.check_run_config`), prepares,
then runs in-process or starts the workers of a multi-process run (:mod:`uer.launch`,
which calls :func:`run_in_worker` in each).  A :class:`~uer.errors.UerError` is printed
as one line on stderr and the process exits with status 2, instead of a traceback.
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
from uer.errors import UerError
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
        stage = STAGES[cfg.stage]
        prepare = getattr(stage.module, "prepare", None)
        if prepare is not None:
            prepare(cfg)
        record_config(cfg)
        distributed.adopt_slurm_tasks()
        result = launch.launch(cfg, run_in_worker) if launch.needed(cfg) else stage.module.run(cfg)
    except UerError as err:
        return _fail(str(err))
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
        return STAGES[cfg.stage].module.run(cfg)
    except UerError as err:
        return _fail(str(err))


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


def _fail(message: str):
    log.error(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    if sweep.in_multirun():
        return sweep.FailedJob(message)
    sys.exit(2)


def _log_summary(cfg: DictConfig, result, seconds: float) -> None:
    """The run's last line: its score, wall time and checkpoint (on the process that started it)."""
    if not is_main_process():
        return
    try:
        model_dir = Path(cfg.output_model_path) if cfg.get("output_model_path") else run_dir(Path.cwd()) / "model"
        directory = run_dir(model_dir)
        facts = sweep.outcome(cfg, result, directory)
        log.info("%s", sweep.summary_line(cfg.stage, facts, seconds))
        if "logger" in cfg:
            from uer.training.loggers import log_run_end

            log_run_end(cfg, facts, directory)
    except Exception as err:  # noqa: BLE001 - a summary must never fail a finished run
        log.warning("could not summarise the run: %s", err)
