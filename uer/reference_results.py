"""Published numbers as data: what a reproduction preset aims at, and ours beside it.

A fine-tuning preset that reproduces a published result lists it under ``published``::

    published:
      - {split: test, metric: acc, value: 0.875, source: "UER-py README (4e7597d): quickstart, Google's BERT-base"}

``value`` is on our scale (fractions: 87.5% is 0.875); ``metric`` is one the task reports
and ``split`` says which of our scores it compares with: ``test`` (the best model on
``finetune.test_path``), ``dev`` (the best dev score) or ``cv`` (the mean over folds of
``task=classifier_cv``).  The run's summary line and the sweep's tables (mean ± std over
seeds) print ours, the published value and the difference (ours - published).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import MISSING

from uer.config.fields import setting
from uer.errors import UerError

SPLITS = ("test", "dev", "cv")


@dataclass
class PublishedResult:
    """One published number a run reproduces."""

    metric: str = setting(MISSING, "the task's metric it is, e.g. acc, f1 (one of the task's metrics)")
    value: float = setting(MISSING, "the published value on our scale (fractions: 87.5% is 0.875)")
    source: str = setting(MISSING, "where it was published, e.g. UER-py README (4e7597d), quickstart")
    split: str = setting("test", "the score it compares with: test | dev | cv (the mean over folds)")


def check_published(entries, metrics: tuple[str, ...], task: str) -> None:
    """A UerError naming the first entry that cannot be compared with a score of ``task``."""
    for index, entry in enumerate(entries):
        where = f"published[{index}]"
        if entry.split not in SPLITS:
            raise UerError(f"{where}.split={entry.split} is not a split we score; use one of: {', '.join(SPLITS)}")
        if entry.split == "cv" and task != "classifier_cv":
            raise UerError(f"{where}.split=cv compares with the mean over folds of task=classifier_cv, "
                           f"but this run is task={task}; use split=test or dev")
        if entry.metric not in metrics:
            raise UerError(f"{where}.metric={entry.metric} is not reported by task {task}; "
                           f"choose one of: {', '.join(metrics)}")
        if not math.isfinite(entry.value):
            raise UerError(f"{where}.value={entry.value} must be a finite number")


def ours(facts: dict, split: str, metric: str) -> float | None:
    """Our score ``metric`` of ``split`` in a run's facts (:func:`uer.outcome.outcome`), or None."""
    if split == "test":
        scores = facts.get("test") or {}
    else:  # the best dev scores, or for cross-validation the mean over folds, are the run's "dev" part
        scored = str(facts.get("metric") or "dev").split(" ", 1)[0]
        scores = (facts.get("dev") or {}) if scored == split else {}
    value = scores.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def label(entry: dict) -> str:
    """``test acc``: the split and metric of a published entry."""
    return f"{entry['split']} {entry['metric']}"


def comparison(entry: dict, value: float | None, std: float | None = None) -> str:
    """``published test acc 0.8750 (source), ours 0.8230 ± 0.0040, difference -0.0520``."""
    text = f"published {label(entry)} {entry['value']:.4f} ({entry['source']})"
    if value is None:
        return f"{text}, ours: none (no {entry['split']} score)"
    spread = f" ± {std:.4f}" if std is not None else ""
    return f"{text}, ours {value:.4f}{spread}, difference {value - entry['value']:+.4f}"
