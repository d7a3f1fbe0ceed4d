"""What a run produced, said in one line; and the results table of a sweep (``python main.py -m ...``).

**One run.**  :func:`outcome` reads what a finished stage left behind (``results.jsonl``
of fine-tuning, ``metrics.jsonl`` of pre-training, the checkpoints) and
:func:`summary_line` turns it into the last line a run logs::

    finetune done in 1m05s | best dev acc 0.8125 (epoch 2) | test acc 0.8010 macro_f1 0.7990 | checkpoint outputs/models/douban/best.pt

**A sweep.**  :class:`SweepResults` is a Hydra callback (``hydra.callbacks.sweep_results``
in ``conf/config.yaml``).  After every job it writes ``sweep_job.json`` into the job's
directory and rewrites ``results.csv`` and ``results.md`` in the sweep directory: one row
per job with the overrides that differ between jobs, its status, its score (what the job
returned to Hydra: the best dev metric of ``finetune``, the final loss of ``pretrain``),
its dev and test metrics, its time and its checkpoint; the best row is marked.  A job that
fails is a row with its error: inside a sweep ``run_stage`` returns a :class:`FailedJob`
instead of ending the process, so the other jobs still run (and a search sweeper such as
Optuna records a failed trial).  When the sweep ends, one line names the best job and,
with ``fail_on_error`` (the default), the exit status is 1 if any job failed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uer import reference_results
from uer.paths import model_dir
from uer.progress import format_duration, short_path
from uer.sweep_tables import describe_best, fmt, number, write_atomic, write_tables

try:  # Hydra >= 1.2
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("uer.sweep")

JOB_FILE = "sweep_job.json"
RESULTS = "results.jsonl"
METRICS = "metrics.jsonl"


class FailedJob:
    """What ``run_stage`` returns for a job of a sweep that failed, instead of exiting.

    Hydra keeps sweeping; :class:`SweepResults` turns it into a failed row.  It is not a
    number on purpose: a search sweeper (Optuna) counts the trial as failed.
    """

    def __init__(self, error: str):
        self.error = error

    def __repr__(self) -> str:
        return f"failed: {self.error}"

    __str__ = __repr__


def in_multirun() -> bool:
    """True inside a job of ``python main.py -m ...``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - a Hydra config without mode
        return False


# ----------------------------------------------------------------------------- one run

def outcome(cfg: DictConfig, result: Any, run_directory: Path) -> dict:
    """What a finished run of ``cfg.stage`` produced, from its return value and the files it wrote.

    Keys: ``metric`` (the name of ``score``), ``score`` (the value returned to Hydra),
    ``higher_is_better``, ``train`` (the last training report of ``pretrain``), ``dev`` and
    ``test`` (scores of ``finetune``), ``reports`` (the per-class report of ``test``, where the
    task has one), ``published`` (the results the run reproduces, :mod:`uer.reference_results`),
    ``counts`` (of ``preprocess``), ``epoch``, ``step``, ``checkpoint`` (the model to use
    next) and ``output`` (a dataset or predictions file).
    """
    out: dict = {"metric": None, "score": number(result), "higher_is_better": True, "train": {}, "dev": {},
                 "test": {}, "reports": {}, "published": [], "counts": {}, "epoch": None, "step": None,
                 "checkpoint": None, "output": None}
    stage = cfg.get("stage")
    run_directory = Path(run_directory)
    if stage == "finetune":
        _finetune_outcome(cfg, run_directory, out)
    elif stage == "pretrain":
        out.update(metric="loss", higher_is_better=False)
        records = _read_jsonl(run_directory / METRICS)
        if records:
            last = records[-1]
            out["step"] = last.get("step")
            out["train"] = {k: v for k, v in last.items() if k.endswith(("_loss", "_acc")) and number(v) is not None}
        models = model_dir(cfg, run_directory)
        from uer.io.checkpoint import step_checkpoints

        checkpoints = step_checkpoints(models) if models.is_dir() else []
        if checkpoints:
            out["checkpoint"] = str(checkpoints[-1][1])
    elif stage == "score":
        records = [r for r in _read_jsonl(run_directory / RESULTS) if r.get("split") == "score"]
        if records:
            last = records[-1]
            out["test"] = {k: v for k, v in last.items() if k not in ("split", "path", "model", "metric")}
            out.update(checkpoint=last.get("model"), metric=last.get("metric"))
    elif stage == "preprocess":
        out["output"] = str(cfg.preprocess.dataset_path)
        if isinstance(result, dict):
            out["counts"] = {k: result[k] for k in ("documents", "instances", "tokens") if k in result}
        out["score"] = None
    elif isinstance(result, (str, os.PathLike)):
        out["output"] = str(result)
    return out


def _finetune_outcome(cfg: DictConfig, run_directory: Path, out: dict) -> None:
    metric = cfg.finetune.get("metric")
    if not metric:
        try:
            from uer.tasks import get_task

            metrics = get_task(cfg.task.type).metrics
            metric = metrics[0] if metrics else None
        except Exception:  # noqa: BLE001 - an unknown task already failed the run
            metric = None
    out["metric"] = f"dev {metric}" if metric else "dev score"
    records = _read_jsonl(run_directory / RESULTS)
    cv = [r for r in records if r.get("split") == "cv"]
    out["published"] = OmegaConf.to_container(cfg.published, resolve=True) if cfg.get("published") else []
    if cv:  # classifier_cv: the mean over folds of each fold's best epoch
        out["dev"] = {k: v for k, v in _scores(cv[-1]).items() if not k.endswith("_std")}
        out["metric"] = f"cv {metric}" if metric else "cv score"
    else:
        dev = [r for r in records if r.get("split") == "dev" and "fold" not in r]
        if dev:
            key = metric if metric in dev[0] else None
            best = dev[0]
            for record in dev[1:]:
                if key is not None and number(record.get(key)) is not None and record[key] > best.get(key, -math.inf):
                    best = record
            out["dev"] = _scores(best)
            out["epoch"], out["step"] = best.get("epoch"), best.get("step")
    tests = [r for r in records if r.get("split") == "test"]
    if tests:
        out["test"] = _scores(tests[-1])
        if tests[-1].get("report"):
            out["reports"]["test"] = tests[-1]["report"]
    models = model_dir(cfg, run_directory)
    if cfg.task.type == "classifier_cv":
        out["checkpoint"] = str(models) if models.is_dir() else None
    elif (models / "best.pt").exists():
        out["checkpoint"] = str(models / "best.pt")


def _scores(record: dict) -> dict:
    """The scores of a ``results.jsonl`` record: its numbers that are not bookkeeping."""
    return {k: v for k, v in record.items()
            if k not in ("epoch", "step", "fold", "folds_num") and number(v) is not None}


def summary_line(stage: str, facts: dict, seconds: float) -> str:
    """The one line that ends a run: what it scored, how long it took, where its result is."""
    parts = [f"{stage} done in {format_duration(seconds)}"]
    if stage == "finetune":
        if facts["dev"]:
            name = facts["metric"] or "dev"
            key = name.split(" ", 1)[-1]
            value = facts["dev"].get(key, facts["score"])
            at = [f"{unit} {facts[unit]}" for unit in ("epoch", "step") if facts[unit] is not None]
            parts.append(f"best {name} {fmt(value)}" + (f" ({', '.join(at)})" if at else ""))
        elif facts["score"] is not None:
            parts.append(f"{facts['metric']} {fmt(facts['score'])}")
        if facts["test"]:
            parts.append("test " + " ".join(f"{k} {fmt(v)}" for k, v in facts["test"].items()))
        for entry in facts.get("published") or []:
            ours = reference_results.ours(facts, entry["split"], entry["metric"])
            parts.append(reference_results.comparison(entry, ours))
    elif stage == "pretrain":
        if facts["step"] is not None:
            parts.append(f"step {facts['step']}")
        if facts["train"]:
            parts.append(" ".join(f"{k} {fmt(v)}" for k, v in facts["train"].items()))
    elif stage == "score" and facts["test"]:
        parts.append(" ".join(f"{k} {fmt(v)}" for k, v in facts["test"].items()))
    elif stage == "preprocess" and facts["counts"]:
        parts.append(", ".join(f"{v:,} {k}" for k, v in facts["counts"].items()))
    if facts["checkpoint"]:
        parts.append(f"checkpoint {short_path(facts['checkpoint'])}")
    if facts["output"]:
        label = {"preprocess": "dataset", "infer": "predictions"}.get(stage, "output")
        parts.append(f"{label} {short_path(facts['output'])}")
    return " | ".join(parts)


# ----------------------------------------------------------------------------- sweeps

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
    from hydra.types import RunMode

    mode = OmegaConf.select(config, "hydra.mode", default=None)
    return mode == RunMode.MULTIRUN or str(mode).endswith("MULTIRUN")


def job_row(config: DictConfig, job_return: Any, seconds: float | None) -> dict:
    """One job of a sweep as a plain dict (what ``sweep_job.json`` holds)."""
    from hydra.core.utils import JobStatus

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


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records
