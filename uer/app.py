"""Run a composed config: check it, take its outputs, prepare, run its stage or start its workers.

:func:`run_stage` checks the config (:func:`uer.config.validate.check_run_config`), takes
the run's outputs and the run directory (none of them one of the run's inputs; checked
writable and locked for the run's whole life, :mod:`uer.io.outputs`), prepares (the stage's
``prepare(cfg)``: checks and decisions made once, in the launching process, before any
worker starts), then runs the stage
in-process or starts the workers of a multi-process run (:mod:`uer.launch`, which calls
:func:`run_in_worker` in each).  A :class:`~uer.errors.UerError` -- and an OS error no stage
expected (a file that vanished) -- is printed as one line on stderr (no escape codes; a
traceback goes to the log file only) and the process exits with status 2, instead of a
traceback; an impossible embedding x encoder x target is worded here with the valid
combinations (:mod:`uer.combinations`).  Inside a sweep (``python main.py -m ...``) a
failed job does not end the process: its error is logged and it returns a
:class:`~uer.outcome.FailedJob`, a failed row in the sweep's results table
(:mod:`uer.sweep`), while the other jobs run.  A run that finishes logs one summary line
(:func:`uer.outcome.summary_line`) and, for a training stage, gives its logger the final
numbers (:func:`uer.training.loggers.log_run_end`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from uer import distributed, launch, outcome
from uer.combinations import worded
from uer.config.config_path import apply_config_path
from uer.config.overrides import command_line_overrides
from uer.config.validate import check_run_config
from uer.errors import UerError, one_line, reason
from uer.finetuning.checkpoints import LAST, earlier_models
from uer.io.atomic import atomic_write, os_reason
from uer.io.checkpoint import step_checkpoints
from uer.io.outputs import DIRECTORY, Input, Output, check_apart, claimed, inputs_at
from uer.paths import model_dir
from uer.progress import is_main_process
from uer.runtime import run_dir
from uer.stages import STAGES
from uer.training import fsdp
from uer.training.process import check_compile
from uer.training.loggers import log_run_end

log = logging.getLogger("uer")


def run_stage(cfg: DictConfig):
    """Check, prepare and run ``cfg``'s stage; its result (see the module docstring for failures)."""
    started = time.perf_counter()
    try:
        check_run_config(cfg)
        check_apart(outputs(cfg, run_directory=True), inputs(cfg))
        apply_config_path(cfg, command_line_overrides())
        launch.check_devices(cfg)
        fsdp.check_strategy(cfg)
        check_compile(cfg)
        distributed.adopt_slurm_tasks()
        stage = STAGES[cfg.stage]
        if distributed.starts_workers(cfg):
            check_data_present(cfg)
        with claimed(outputs(cfg, run_directory=True) if _holds_outputs(cfg, worker=False) else []):
            prepare = getattr(stage, "prepare", None)
            if prepare is not None:
                prepare(cfg)
            record_config(cfg)
            result = launch.launch(cfg, run_in_worker) if distributed.starts_workers(cfg) else stage.run(cfg)
    except UerError as err:
        return _fail(worded(err))
    except OSError as err:  # one the stage did not expect (a file that vanished, a write it does not guard)
        return _fail(_os_error_line(err), err)
    except KeyboardInterrupt as err:
        if outcome.in_multirun():
            raise  # the sweep stops as a whole
        _interrupted(cfg, getattr(err, "signum", signal.SIGINT))
    except Exception as err:
        if not outcome.in_multirun():
            raise
        log.exception("job failed")  # the traceback goes to this job's log; the sweep goes on
        return outcome.FailedJob(f"{type(err).__name__}: {err}")
    _log_summary(cfg, result, time.perf_counter() - started)
    return result


def run_in_worker(cfg: DictConfig):
    """One rank of a multi-process run: the launching process checked and prepared ``cfg``, and prints the
    line of a UerError raised here (once, however many ranks raise it: :mod:`uer.launch`)."""
    try:
        with claimed(outputs(cfg, run_directory=False) if _holds_outputs(cfg, worker=True) else []):
            return STAGES[cfg.stage].run(cfg)
    except UerError as err:
        raise UerError(one_line(worded(err))) from None
    except OSError as err:
        _traceback_to_log_files(err)
        raise UerError(one_line(_os_error_line(err))) from None


def outputs(cfg: DictConfig, run_directory: bool) -> list[Output]:
    """Where the run writes: its stage's outputs (``outputs(cfg)`` of the stage module) and the run directory."""
    found = []
    if run_directory and HydraConfig.initialized():
        key = "hydra.sweep.dir" if outcome.in_multirun() else "hydra.run.dir"
        found.append(Output(key, Path(HydraConfig.get().runtime.output_dir), DIRECTORY))
    stage_outputs = getattr(STAGES[cfg.stage], "outputs", None)
    return found + (stage_outputs(cfg) if stage_outputs is not None else [])


def inputs(cfg: DictConfig) -> list[Input]:
    """What the run reads: the files its stage's settings name (``input_keys(cfg)`` of the stage module)."""
    keys = getattr(STAGES[cfg.stage], "input_keys", None)
    return inputs_at(cfg, keys(cfg)) if keys is not None else []


def check_data_present(cfg: DictConfig) -> None:
    """Before workers start: the files the stage's own section names (``finetune.dev_path``,
    ``pretrain.dataset_path``) exist -- found missing inside the workers, the run would start them for nothing."""
    for source in inputs(cfg):
        if source.key.startswith(f"{cfg.stage}.") and not source.path.exists():
            raise UerError(f"{source.key}={source.path}: no such file or directory; check the path (nothing was "
                           "started)")


def _holds_outputs(cfg: DictConfig, worker: bool) -> bool:
    """Whether this process locks the run's outputs: the one process a run has, or the one that starts its
    workers -- but in a run across machines, whose launching processes all run the same command, rank 0."""
    if not is_main_process():
        return False
    if worker:
        return cfg.hardware.nnodes > 1
    return not (distributed.starts_workers(cfg) and cfg.hardware.nnodes > 1)


CONFIG_FILE = "config.yaml"


def record_config(cfg: DictConfig) -> None:
    """Write the config the run uses (after preparing: e.g. a starting checkpoint's architecture)
    as ``config.yaml`` in the run directory, beside Hydra's record of what was composed."""
    if not HydraConfig.initialized():
        return
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
    if outcome.in_multirun():
        return outcome.FailedJob(message)
    sys.exit(2)


def _interrupted(cfg: DictConfig, signum: int):
    """One line for a run stopped by a signal -- what is kept and how to go on -- and exit 128 + the signal."""
    message = f"interrupted by {signal.Signals(signum).name}: {_how_to_go_on(cfg)}"
    log.warning(message)
    print(message, file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stdout.flush()
    # Not sys.exit: a helper thread the interrupted step left running (batch prefetch, a logger's writer) could
    # still write while the interpreter tears down, and abort it; what is kept was closed before this line.
    os._exit(128 + signum)


def _how_to_go_on(cfg: DictConfig) -> str:
    directory = model_dir(cfg) if cfg.stage in ("pretrain", "finetune") else None
    if directory is not None and _has_checkpoint(directory):
        return (f"the checkpoints saved so far are kept in {directory}; the same command with resume=true "
                "continues from the newest")
    if directory is not None and earlier_models(directory):  # best.pt written, its last.pt not yet
        return (f"{directory} holds no last.pt yet; the same command with resume=true starts the run again "
                "(a plain rerun is refused so that nothing is replaced by surprise)")
    return "nothing half-written is kept; run the command again"


def _has_checkpoint(directory: Path) -> bool:
    """Whether a training run left something ``resume=true`` continues from: pre-training's ``step_N.pt``, or
    fine-tuning's ``last.pt`` (also in cross-validation's fold directories)."""
    return bool(step_checkpoints(directory)) or any(path.name == LAST for path in earlier_models(directory))


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
        facts = outcome.outcome(cfg, result, directory)
        log.info("%s", outcome.summary_line(cfg.stage, facts, seconds))
        if "logger" in cfg:
            log_run_end(cfg, facts, directory)
    except Exception as err:  # noqa: BLE001 - a summary must never fail a finished run
        log.warning("could not summarise the run: %s", err)
