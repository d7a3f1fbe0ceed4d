"""What a run did: its outcome, read from the files it wrote, and the one line that says it.

:func:`outcome` reads what a finished stage left behind (``results.jsonl`` of fine-tuning,
``metrics.jsonl`` of pre-training, the checkpoints) and :func:`summary_line` turns it into
the last line a run logs::

    finetune done in 1m05s | best dev acc 0.8125 (epoch 2) | test acc 0.8010 macro_f1 0.7990 | checkpoint outputs/models/douban/best.pt

Pre-training with ``pretrain.dev_dataset_path`` writes its held-out evaluations to ``results.jsonl``
the same way (``"split": "dev", "metric": "loss"``), and its score is the lowest held-out loss.
Fine-tuning's ``results.jsonl`` names the metric that picks the best evaluation
(``"metric": "acc"`` on each dev and cross-validation record), so reading it needs no task
code.  Files written before records named it fall back to ``finetune.metric`` of the run's
config, else to the first score recorded: the task's first metric (its default), as a task
records its metrics in their order.

Inside a sweep (``python main.py -m ...``) a job that fails is a :class:`FailedJob`, which
the sweep's table (:mod:`uer.sweep`) turns into a failed row.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from uer import reference_results
from uer.io.checkpoint import step_checkpoints
from uer.paths import model_dir
from uer.progress import format_duration, short_path

RESULTS = "results.jsonl"
METRICS = "metrics.jsonl"


class FailedJob:
    """What ``run_stage`` returns for a job of a sweep that failed, instead of exiting.

    Hydra keeps sweeping; :class:`uer.sweep.SweepResults` turns it into a failed row.  It is not a
    number on purpose: a search sweeper (Optuna) counts the trial as failed.
    """

    def __init__(self, error: str):
        self.error = error

    def __repr__(self) -> str:
        return f"failed: {self.error}"

    __str__ = __repr__


def in_multirun() -> bool:
    """True inside a job of ``python main.py -m ...``."""
    if not HydraConfig.initialized():
        return False
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - a Hydra config without mode
        return False


def outcome(cfg: DictConfig, result: Any, run_directory: Path) -> dict:
    """What a finished run of ``cfg.stage`` produced, from its return value and the files it wrote.

    Keys: ``metric`` (the name of ``score``), ``score`` (the value returned to Hydra),
    ``higher_is_better``, ``train`` (the last training report of ``pretrain``), ``dev`` (scores of
    ``finetune``; of ``pretrain`` with a held-out dataset, its best evaluation, at ``dev_step``) and
    ``test`` (scores of ``finetune``), ``reports`` (the per-class report of ``test``, where the
    task has one), ``published`` (the results the run reproduces, :mod:`uer.reference_results`),
    ``counts`` (of ``preprocess``), ``epoch``, ``step``, ``checkpoint`` (the model to use
    next) and ``output`` (a dataset or predictions file).
    """
    out: dict = {"metric": None, "score": number(result), "higher_is_better": True, "train": {}, "dev": {},
                 "test": {}, "reports": {}, "published": [], "counts": {}, "epoch": None, "step": None,
                 "dev_step": None, "checkpoint": None, "output": None}
    stage = cfg.get("stage")
    run_directory = Path(run_directory)
    if stage == "finetune":
        _finetune_outcome(cfg, run_directory, out)
    elif stage == "pretrain":
        _pretrain_outcome(cfg, run_directory, out)
    elif stage == "score":
        records = [r for r in read_jsonl(run_directory / RESULTS) if r.get("split") == "score"]
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


def _pretrain_outcome(cfg: DictConfig, run_directory: Path, out: dict) -> None:
    """The last training report (``metrics.jsonl``) and, with ``pretrain.dev_dataset_path``, the held-out
    evaluation of lowest loss (``results.jsonl``): the run's score, as ``run`` returns it."""
    out.update(metric="loss", higher_is_better=False)
    reports = [r for r in read_jsonl(run_directory / METRICS) if "split" not in r]  # held-out ones have a split
    if reports:
        last = reports[-1]
        out["step"] = last.get("step")
        out["train"] = {k: v for k, v in last.items() if k.endswith(("_loss", "_acc")) and number(v) is not None}
    heldout = [r for r in read_jsonl(run_directory / RESULTS)
               if r.get("split") == "dev" and number(r.get(r.get("metric"))) is not None]
    if heldout:
        best = min(heldout, key=lambda r: r[r["metric"]])
        out["metric"] = f"dev {best['metric']}"
        out["dev"] = _scores(best)
        out["dev_step"] = best.get("step")
    models = model_dir(cfg, run_directory)
    checkpoints = step_checkpoints(models) if models.is_dir() else []
    if (models / "best.pt").is_file():
        out["checkpoint"] = str(models / "best.pt")
    elif checkpoints:
        out["checkpoint"] = str(checkpoints[-1][1])


def _finetune_outcome(cfg: DictConfig, run_directory: Path, out: dict) -> None:
    records = read_jsonl(run_directory / RESULTS)
    metric = _selection_metric(cfg, records)
    out["metric"] = f"dev {metric}" if metric else "dev score"
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


def _selection_metric(cfg: DictConfig, records: list[dict]) -> str | None:
    """The metric that picked the best evaluation: the one the dev and cross-validation records name.

    Records written before they named it: ``finetune.metric``, else the first score recorded (a task
    records its metrics in their order, and its first is the default)."""
    evaluations = [r for r in records if r.get("split") in ("dev", "cv")]
    named = next((r["metric"] for r in evaluations if r.get("metric")), None)
    if named:
        return named
    if cfg.finetune.get("metric"):
        return cfg.finetune.metric
    return next(iter(_scores(evaluations[0])), None) if evaluations else None


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
        if facts["dev"]:
            parts.append(f"best held-out (step {facts['dev_step']}) "
                         + " ".join(f"{k} {fmt(v)}" for k, v in facts["dev"].items()))
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


def number(value: Any) -> float | None:
    """``value`` as a float when it is a number (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt(value: Any) -> str:
    """A number as a summary line and a table print it: an int as it is, a float to 4 decimals."""
    if number(value) is None:
        return "" if value is None else str(value)
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (none when it is absent); a line that is not JSON is skipped."""
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
