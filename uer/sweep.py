"""The results table of a sweep (``python main.py -m ...``): a Hydra callback that reads each job's files.

:class:`SweepResults` is a Hydra callback (``hydra.callbacks.sweep_results`` in
``conf/config.yaml``).  After every job it writes ``sweep_job.json`` into the job's
directory (the job's :func:`uer.outcome.outcome`, read from the files it wrote) and
rewrites ``results.csv`` and ``results.md`` in the sweep directory
(:mod:`uer.sweep_tables`): one row per job with the overrides that differ between jobs,
its status, its score (what the job returned to Hydra: the best dev metric of
``finetune``, the final loss of ``pretrain``), its dev and test metrics, its time and its
checkpoint; the best row is marked.  A job that fails is a row with its error: inside a
sweep ``run_stage`` returns a :class:`~uer.outcome.FailedJob` instead of ending the
process, so the other jobs still run (and a search sweeper such as Optuna records a failed
trial).  When the sweep ends, one line names the best job and, with ``fail_on_error`` (the
default), the exit status is 1 if any job failed.

A sweep owns its directory (``hydra.sweep.dir``) as a run owns its outputs
(:mod:`uer.io.outputs`): it is locked from the sweep's start to its end, so a second sweep
into it at the same time stops at once, and a directory an earlier sweep wrote is refused
(its tables and job directories would be mixed with this one's) unless ``extend`` is set
and the sweeper numbers its jobs after the earlier ones (a resumed Optuna search).  A sweep
stopped by SIGINT/SIGTERM (:func:`stop_interrupted`) writes its table with the running job
as an ``interrupted`` row and says so, and a launcher that loses a worker process
(:func:`lost_jobs`) makes each job without a row a failed one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError, one_line
from uer.io.outputs import DIRECTORY, LOCK_FILE, Output, claimed
from uer.outcome import FailedJob, outcome
from uer.progress import format_duration, short_path
from uer.sweep_tables import TABLE_CSV, TABLE_MD, describe_best, write_atomic, write_tables

try:  # Hydra >= 1.2
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("uer.sweep")

JOB_FILE = "sweep_job.json"
SWEEP_KEY = "hydra.sweep.dir"
EXTEND_KEY = "hydra.callbacks.sweep_results.extend"
# What an earlier sweep leaves in its directory (Hydra writes multirun.yaml when a sweep starts).
EARLIER_SWEEP_FILES = ("multirun.yaml", TABLE_MD, TABLE_CSV)
# Sweepers that number a sweep's jobs after the ones its directory already holds (hydra_plugins/uer_search).
RENUMBERING_SWEEPERS = ("ResumableOptunaSweeper",)
INTERRUPTED = "interrupted"

_running: Optional["SweepResults"] = None  # the sweep of this process, for stop_interrupted


class SweepResults(Callback):
    """Hydra callback: a results table of every job of a sweep, in the sweep directory.

    ``fail_on_error``: end the sweep with exit status 1 when a job failed (after every job
    ran and the table was written).  ``direction``: ``maximize`` or ``minimize`` the score
    to pick the best row; null = the sweeper's direction (Optuna), else maximize for
    ``finetune`` (a dev metric) and minimize for ``pretrain`` (a loss).  ``extend``: add jobs to a
    directory an earlier sweep wrote (refused otherwise).
    """

    def __init__(self, fail_on_error: bool = True, direction: str | None = None, extend: bool = False):
        self.fail_on_error = fail_on_error
        self.direction = direction
        self.extend = extend
        self._job_started: float | None = None  # a launcher runs one job at a time per process
        self._sweep_start: float | None = None
        self._sweep_config: DictConfig | None = None
        self._owned = contextlib.ExitStack()

    def __getstate__(self) -> dict:
        """What a launcher's worker process gets (joblib pickles the callbacks): the settings, not the lock."""
        return {"fail_on_error": self.fail_on_error, "direction": self.direction, "extend": self.extend}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    # Hydra calls these; single runs (no -m) only reach on_run_*, which do nothing here.
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _running
        self._sweep_start = time.perf_counter()
        try:
            self._owned = own_sweep_dir(config, self.extend)
        except UerError as err:
            print(f"error: {one_line(str(err))}", file=sys.stderr, flush=True)
            sys.exit(2)
        self._sweep_config = config
        _running = self
        if config.get("output_model_path"):
            log.warning("output_model_path=%s is the same for every job of this sweep, so each job's model "
                        "replaces the last one's; leave it unset (each job writes model/ in its own directory) "
                        "or make it differ, e.g. output_model_path=outputs/models/sweep_${hydra:job.num}",
                        config.output_model_path)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            self._job_started = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        try:
            job_dir = Path(str(config.hydra.runtime.output_dir))
            started, self._job_started = self._job_started, None
            seconds = time.perf_counter() - started if started is not None else None
            write_row(job_dir, job_row(config, job_return, seconds))
            sweep_dir = Path(str(config.hydra.sweep.dir))
            write_tables(sweep_dir, collect_rows(sweep_dir), self._direction(config))
        except Exception:  # noqa: BLE001 - a table problem must not end the sweep
            log.exception("could not update the sweep results table")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _running
        _running = None
        with self._owned:
            self._end(config)

    def _end(self, config: DictConfig) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = collect_rows(sweep_dir)
        if not rows:
            return
        _, md_path, best = write_tables(sweep_dir, rows, self._direction(config),
                                        command=_command(config))
        failed = [row for row in rows if row["status"] != "ok"]
        took = f" in {format_duration(time.perf_counter() - self._sweep_start)}" if self._sweep_start else ""
        text = f"sweep of {len(rows)} job(s){took}, {len(failed)} failed"
        if best is not None:
            text += f" | best: {describe_best(best)}"
        log.info("%s | table %s", text, short_path(md_path))
        if failed and self.fail_on_error:
            first = failed[0]
            message = (f"{len(failed)} of {len(rows)} jobs failed (job {first['job']}: {first['error']}); "
                       f"see {short_path(md_path)}")
            log.error(message)
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(1)  # (the with-block of on_multirun_end releases the directory)

    def interrupted(self, name: str) -> str:
        """Write the table of a sweep stopped by signal ``name`` (the running job an ``interrupted`` row),
        release the sweep directory; the line that says so."""
        config = self._sweep_config
        sweep_dir = Path(str(config.hydra.sweep.dir))
        with self._owned:
            # Every job that started and wrote no row: the one running here, or those a launcher's worker
            # processes ran (joblib's, stopped with the sweep, their locks left behind).
            stopped = unfinished_rows(sweep_dir, config, INTERRUPTED, f"{INTERRUPTED} by {name}")
            rows = collect_rows(sweep_dir)
            _, md_path, _ = write_tables(sweep_dir, rows, self._direction(config), command=_command(config),
                                         interrupted=name)
        finished = sum(row["status"] != INTERRUPTED for row in rows)
        numbers = [str(row["job"]) for row in stopped]
        where = f" at job{'s' * (len(numbers) > 1)} {', '.join(numbers)}" if numbers else ""
        return (f"interrupted by {name}: the sweep stopped{where} with {finished} job(s) finished; its table is "
                f"{short_path(md_path)}")

    def _direction(self, config: DictConfig) -> str:
        if self.direction:
            return str(self.direction)
        sweeper_direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
        if sweeper_direction is not None:
            if OmegaConf.is_list(sweeper_direction):
                sweeper_direction = sweeper_direction[0] if len(sweeper_direction) else None
            if sweeper_direction is not None:
                return str(getattr(sweeper_direction, "name", sweeper_direction)).split(".")[-1].lower()
        return "minimize" if config.get("stage") == "pretrain" else "maximize"


def _is_multirun(config: DictConfig) -> bool:
    mode = OmegaConf.select(config, "hydra.mode", default=None)
    return mode == RunMode.MULTIRUN or str(mode).endswith("MULTIRUN")


def job_row(config: DictConfig, job_return: Any, seconds: float | None) -> dict:
    """One job of a sweep as a plain dict (what ``sweep_job.json`` holds)."""
    job_dir = Path(str(config.hydra.runtime.output_dir))
    cfg = job_return.cfg if getattr(job_return, "cfg", None) is not None else config
    value = getattr(job_return, "_return_value", job_return)  # a FailedJob stands for itself
    error = None
    if getattr(job_return, "status", None) == JobStatus.FAILED:
        error = f"{type(value).__name__}: {value}"
        value = None
    elif isinstance(value, FailedJob):
        error, value = value.error, None
    row = {"job": int(config.hydra.job.num), "overrides": [str(o) for o in config.hydra.overrides.task],
           "status": "failed" if error else "ok", "error": error, "seconds": seconds, "run_dir": str(job_dir),
           "stage": cfg.get("stage")}
    try:
        facts = outcome(cfg, value, job_dir) if not error else {}
    except Exception as exc:  # noqa: BLE001 - the row still says the job finished
        log.warning("job %s: could not read its results: %s", row["job"], exc)
        facts = {}
    row.update(metric=facts.get("metric"), score=facts.get("score"), train=facts.get("train") or {},
               dev=facts.get("dev") or {},
               test=facts.get("test") or {}, epoch=facts.get("epoch"), checkpoint=facts.get("checkpoint"),
               output=facts.get("output"), published=facts.get("published") or [])
    return row


def write_row(job_dir: Path, row: dict) -> None:
    write_atomic(job_dir / JOB_FILE, json.dumps(row, indent=2, default=str) + "\n")


def own_sweep_dir(config: DictConfig, extend: bool) -> contextlib.ExitStack:
    """Lock ``hydra.sweep.dir`` for this sweep (released when the stack closes); a UerError when another
    sweep holds it, or an earlier sweep wrote it and this one may not add to it."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    owned = claimed([Output(SWEEP_KEY, sweep_dir, DIRECTORY)])
    try:
        check_earlier_sweep(sweep_dir, config, extend)
    except BaseException:
        owned.close()
        raise
    return owned


def check_earlier_sweep(sweep_dir: Path, config: DictConfig, extend: bool) -> None:
    """A UerError when ``sweep_dir`` holds an earlier sweep, unless ``extend`` and this sweeper numbers its
    jobs after the earlier ones (others start at job 0 and would write into the earlier jobs' directories)."""
    earlier = [name for name in EARLIER_SWEEP_FILES if (sweep_dir / name).exists()]
    rows = collect_rows(sweep_dir)
    if not earlier and not rows:
        return
    what = f"an earlier sweep ({', '.join(earlier) or JOB_FILE}{f', {len(rows)} job(s)' if rows else ''})"
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    renumbers = sweeper.rsplit(".", 1)[-1] in RENUMBERING_SWEEPERS
    if not extend:
        add = f"; or add this search's trials to it with {EXTEND_KEY}=true" if renumbers else ""
        raise UerError(f"{SWEEP_KEY}={sweep_dir} holds {what}, which this sweep would mix with its own; choose "
                       f"another {SWEEP_KEY} (or leave it to the default, a new directory per sweep){add}")
    if not renumbers:
        raise UerError(f"{SWEEP_KEY}={sweep_dir} holds {what}, and {EXTEND_KEY}=true cannot add to it with this "
                       "sweeper: it numbers its jobs from 0 again and would write into the earlier jobs' "
                       f"directories; choose another {SWEEP_KEY}")
    log.info("%s=%s: adding to %s", SWEEP_KEY, sweep_dir, what)


def stop_interrupted(signum: int) -> str:
    """The line for a sweep of this process stopped by ``signum`` (its table written, its directory released)."""
    name = signal.Signals(signum).name
    sweep = _running
    if sweep is None or sweep._sweep_config is None:
        return f"interrupted by {name} before the sweep's first job"
    return sweep.interrupted(name)


def lost_jobs(config: DictConfig, job_overrides: Sequence[Sequence[str]], first_job: int,
              err: Exception) -> list[JobReturn]:
    """After a launcher lost its worker processes (one was killed): every job of the batch that wrote no row
    becomes a failed row (and its run directory's lock, left by the dead worker, is removed); their returns."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    reason = f"its worker process ended without a result ({type(err).__name__}: {one_line(str(err))})"
    started = {row["job"] for row in unfinished_rows(sweep_dir, config, "failed", reason)}
    done = {row.get("job") for row in collect_rows(sweep_dir)} - started
    returns = []
    for number, overrides in enumerate(job_overrides, start=first_job):
        if number in done:
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED))
            continue
        if number not in started:  # lost before Hydra made its directory
            write_row(sweep_dir / str(number), _unfinished_row(number, overrides, sweep_dir / str(number), config,
                                                               "failed", reason))
        log.error("job %d: %s", number, reason)
        # As run_stage returns a failed job inside a sweep: a sweeper reads the return value of every job.
        returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                                 _return_value=FailedJob(reason)))
    return returns


def unfinished_rows(sweep_dir: Path, config: DictConfig, status: str, error: str) -> list[dict]:
    """A row with ``status`` and ``error`` for every job of the sweep that started (Hydra made its directory)
    and wrote none, each written after the locks its stopped process left are removed; the rows."""
    done = {row.get("job") for row in collect_rows(sweep_dir)}
    rows = []
    for number, job in sorted(_started_jobs(sweep_dir).items()):
        if number in done:
            continue
        job_dir = Path(str(job.hydra.runtime.output_dir))
        _release_left_locks(job_dir)
        row = _unfinished_row(number, job.hydra.overrides.task, job_dir, config, status, error)
        write_row(job_dir, row)
        rows.append(row)
    return rows


def _unfinished_row(number: int, overrides, job_dir: Path, config: DictConfig, status: str, error: str) -> dict:
    return {"job": number, "overrides": [str(o) for o in overrides], "status": status, "error": error,
            "seconds": None, "run_dir": str(job_dir), "stage": config.get("stage")}


def _started_jobs(sweep_dir: Path) -> dict[int, DictConfig]:
    """Job number -> the ``.hydra/hydra.yaml`` Hydra writes when a job starts (its directory and overrides)."""
    found = {}
    for path in sweep_dir.rglob(".hydra/hydra.yaml"):
        try:
            job = OmegaConf.load(path)
            found[int(job.hydra.job.num)] = job
        except Exception:  # noqa: BLE001 - a file half written by the killed job: not one of ours to name
            continue
    return found


def _release_left_locks(job_dir: Path) -> None:
    """Take over and release the locks a killed job left in its run directory and below (its model
    directory), each logged, where they are free."""
    for lock in sorted(job_dir.rglob(LOCK_FILE)):
        try:
            claimed([Output(SWEEP_KEY, lock.parent, DIRECTORY)]).close()
        except UerError as err:
            log.warning("%s", err)


def collect_rows(sweep_dir: Path) -> list[dict]:
    """Every ``sweep_job.json`` under ``sweep_dir``, by job number."""
    rows = []
    for path in sorted(Path(sweep_dir).rglob(JOB_FILE)):
        try:
            rows.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    rows.sort(key=lambda row: row.get("job", 0))
    return rows


def _command(config: DictConfig) -> str:
    try:
        return " ".join(str(o) for o in config.hydra.overrides.task)
    except Exception:  # noqa: BLE001
        return ""
