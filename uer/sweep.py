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
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from uer.outcome import FailedJob, outcome
from uer.progress import format_duration, short_path
from uer.sweep_tables import describe_best, write_atomic, write_tables

try:  # Hydra >= 1.2
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("uer.sweep")

JOB_FILE = "sweep_job.json"


class SweepResults(Callback):
    """Hydra callback: a results table of every job of a sweep, in the sweep directory.

    ``fail_on_error``: end the sweep with exit status 1 when a job failed (after every job
    ran and the table was written).  ``direction``: ``maximize`` or ``minimize`` the score
    to pick the best row; null = the sweeper's direction (Optuna), else maximize for
    ``finetune`` (a dev metric) and minimize for ``pretrain`` (a loss).
    """

    def __init__(self, fail_on_error: bool = True, direction: str | None = None):
        self.fail_on_error = fail_on_error
        self.direction = direction
        self._job_started: float | None = None  # a launcher runs one job at a time per process
        self._sweep_start: float | None = None

    # Hydra calls these; single runs (no -m) only reach on_run_*, which do nothing here.
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_start = time.perf_counter()
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
            row = job_row(config, job_return, seconds)
            write_atomic(job_dir / JOB_FILE, json.dumps(row, indent=2, default=str) + "\n")
            sweep_dir = Path(str(config.hydra.sweep.dir))
            write_tables(sweep_dir, collect_rows(sweep_dir), self._direction(config))
        except Exception:  # noqa: BLE001 - a table problem must not end the sweep
            log.exception("could not update the sweep results table")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
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
            sys.exit(1)

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
    value = getattr(job_return, "_return_value", None)
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
