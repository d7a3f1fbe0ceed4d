"""What follows each dev evaluation of a fine-tuning run, one policy each, in this order:

* :class:`LogEvaluation` -- its log line and per-class table (and the early stop);
* :class:`SaveBestAndLast` -- ``best.pt`` when it is the best so far, ``last.pt`` always
  (:mod:`uer.finetuning.checkpoints`);
* :class:`RecordEvaluation` -- its line of ``results.jsonl`` and the logger's ``dev/<metric>``
  scalars and ``dev/report`` text.

Each is called on every rank with the :class:`~uer.finetuning.evaluation.Evaluation`; only
the main rank writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from uer.finetuning.checkpoints import last_shards, remove_earlier_shards
from uer.finetuning.evaluation import Best, Evaluation, EvaluationSchedule
from uer.finetuning.results import record
from uer.finetuning.scores import format_scores, log_report
from uer.finetuning.setup import Setup
from uer.io.checkpoint import save_checkpoint
from uer.training.report import Reporter
from uer.training.session import TrainingSession
from uer.training.tables import report_table

log = logging.getLogger("uer.finetune")


class LogEvaluation:
    """Log each evaluation (``name`` prefixes the lines, e.g. ``fold 2/5``), and the early stop."""

    def __init__(self, schedule: EvaluationSchedule, *, metric: str, patience: int | None, name: str, enabled: bool):
        self.schedule, self.metric, self.patience, self.enabled = schedule, metric, patience, enabled
        self.prefix = f"{name} " if name else ""

    def __call__(self, evaluation: Evaluation) -> None:
        if not self.enabled:
            return
        schedule, epoch, step = self.schedule, evaluation.epoch, evaluation.step
        epochs = "" if schedule.epochs_num is None else f"/{schedule.epochs_num}"
        log.info("%sepoch %s%s (step %d/%d) dev: %s%s", self.prefix, epoch, epochs, step, schedule.total_steps,
                 format_scores(evaluation.scores), " (best so far)" if evaluation.improved else "")
        log_report(f"{self.prefix}epoch {epoch} dev", evaluation.scores)
        if evaluation.stop and step < schedule.total_steps:
            log.info("%searly stopping at step %d: no better dev %s in %d evaluations", self.prefix, step,
                     self.metric, self.patience)


class SaveBestAndLast:
    """``best.pt`` (the model alone) at a new best; ``last.pt`` (the model and the session's resumable
    state: data position, best so far, every evaluation so far) at every evaluation.  Both hold the full
    model (a sharded one's gathered to the main rank); a sharded model's optimizer state goes beside
    ``last.pt``, one directory per step (:func:`~uer.finetuning.checkpoints.last_shards`), the one before
    deleted once the new ``last.pt`` is written."""

    def __init__(self, session: TrainingSession, setup: Setup, batches, best: Best, history: list[dict], *,
                 last_path: Path, config: dict):
        self.session, self.setup, self.batches = session, setup, batches
        self.best, self.history, self.last_path, self.config = best, history, last_path, config

    def __call__(self, evaluation: Evaluation) -> None:
        model_state = self.session.model_state()
        shards = last_shards(self.last_path, evaluation.step)
        state = self.session.checkpoint_state(self.batches, self.last_path, shards=shards,
                                              best=self.best.state_dict(), evaluations=self.history)
        if state is None:
            return
        if evaluation.improved:
            self._save(self.best.path, model_state, None)
        self._save(self.last_path, model_state, state)
        remove_earlier_shards(self.last_path, keep=shards)

    def _save(self, path: Path, model_state: dict, trainer: dict | None) -> None:
        save_checkpoint(path, model_state=model_state, config=self.config, tokenizer=self.setup.tokenizer,
                        trainer=trainer, task_info=dict(self.setup.task.info))


class RecordEvaluation:
    """Append each evaluation to ``report_dir/results.jsonl`` and give its scores (and per-class table)
    to the run's logger."""

    def __init__(self, report_dir: Path, reporter: Reporter, *, enabled: bool):
        self.report_dir, self.reporter, self.enabled = report_dir, reporter, enabled

    def __call__(self, evaluation: Evaluation) -> None:
        if not self.enabled:
            return
        record(self.report_dir, evaluation.record)
        self.reporter.scalars("dev", evaluation.scores, evaluation.step)
        if getattr(evaluation.scores, "report", None):
            self.reporter.text("dev/report", report_table(evaluation.scores.report), evaluation.step)
