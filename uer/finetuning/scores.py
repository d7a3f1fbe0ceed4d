"""A fine-tuned model's scores on labelled data, with the task's per-class report, and how they are shown."""

from __future__ import annotations

import logging

import torch
from torch import nn

from uer.finetuning.setup import Setup
from uer.tasks import TaskData, predict
from uer.training.tables import report_table

log = logging.getLogger("uer.finetune")


class Scores(dict):
    """A task's flat ``{metric: float}`` scores, carrying its per-class report as ``report`` ({} if none)."""

    def __init__(self, scores: dict, report: dict | None = None):
        super().__init__(scores)
        self.report = report or {}


def evaluate(setup: Setup, model: nn.Module, data: TaskData, labels_num: int | None) -> Scores:
    """The task's scores of ``model`` on labelled ``data``, with its report."""
    outputs = model_outputs(setup, model, data)
    return Scores(setup.task.evaluate(outputs, data, labels_num), setup.task.report(outputs, data, labels_num))


def report_fields(scores: dict) -> dict:
    """``{"report": ...}`` for a record of ``scores`` that carry a report, else nothing."""
    report = getattr(scores, "report", None)
    return {"report": report} if report else {}


def log_report(what: str, scores: dict) -> None:
    """The per-class table of ``scores`` (if they carry one) as a log record headed ``what``."""
    report = getattr(scores, "report", None)
    if report:
        log.info("%s per class:\n%s", what, report_table(report))


def model_outputs(setup: Setup, model: nn.Module, data: TaskData) -> list[torch.Tensor]:
    return predict(model, setup.task, data, batch_size=setup.cfg.finetune.batch_size, device=setup.device,
                   precision=setup.cfg.hardware.precision)


def format_scores(scores: dict[str, float]) -> str:
    return " | ".join(f"{name} {value:.4f}" for name, value in scores.items())
