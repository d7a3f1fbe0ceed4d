"""Dev evaluations during fine-tuning: when they are due, the best so far, and the session callback
that scores the dev data and hands each evaluation to the policies (:mod:`uer.finetuning.policies`).

An evaluation is due after every epoch, every ``finetune.eval_every_steps`` steps and at the
last step; ``finetune.early_stopping_patience`` ends training after that many evaluations in
a row without a better dev score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from uer import distributed
from uer.finetuning.scores import report_fields
from uer.training.trainer import Trainer


class EvaluationSchedule:
    """The steps of a fine-tuning run (``f`` is ``cfg.finetune``) and which of them end with a dev evaluation."""

    def __init__(self, steps_per_epoch: int, f):
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = f.max_steps or steps_per_epoch * f.epochs_num
        self.epochs_num = None if f.max_steps else f.epochs_num  # None: max_steps decides
        self.every = f.eval_every_steps

    def due(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0 or step == self.total_steps or (
            self.every is not None and step % self.every == 0)

    def epoch_of(self, step: int) -> float:
        return step // self.steps_per_epoch if step % self.steps_per_epoch == 0 \
            else round(step / self.steps_per_epoch, 2)


@dataclass
class Best:
    """The best dev evaluation of a :func:`~uer.finetuning.loop.fit` so far, and how many evaluations since
    did not beat it."""

    path: Path  # its model, best.pt
    score: float | None = None  # on the selection metric
    epoch: float | None = None
    step: int | None = None
    scores: dict = field(default_factory=dict)
    stale: int = 0  # evaluations since the best one: early stopping counts these

    def update(self, scores: dict, metric: str, epoch: float, step: int) -> bool:
        """Take the evaluation ``scores`` into account; True if it is the new best."""
        if self.score is not None and not scores[metric] > self.score:
            self.stale += 1
            return False
        self.score, self.epoch, self.step, self.scores, self.stale = scores[metric], epoch, step, dict(scores), 0
        return True

    def state_dict(self) -> dict:
        return {"score": self.score, "epoch": self.epoch, "step": self.step, "scores": self.scores,
                "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.score, self.epoch, self.step = state["score"], state["epoch"], state["step"]
        self.scores, self.stale = dict(state["scores"]), state["stale"]


@dataclass
class Evaluation:
    """One dev evaluation, as the policies get it."""

    step: int
    epoch: float
    scores: dict  # flat {metric: float}, with the task's per-class report as ``scores.report``
    improved: bool  # the best so far
    stop: bool  # early stopping ends training here
    record: dict  # its line of results.jsonl


class DevEvaluations:
    """The session callback of fine-tuning: at each due step, score the dev data with ``evaluate_dev()``,
    keep the best by ``metric`` and hand the :class:`Evaluation` to each of ``policies`` in turn; True
    once early stopping ends training.

    Every rank scores the whole dev set (an FSDP-sharded model's full weights, in an unsharded copy: see
    :meth:`~uer.training.session.TrainingSession.scoring_model`) and all take rank 0's scores, so they agree
    on the best and on stopping even where two GPUs' kernels round differently (a disagreement would leave
    one rank waiting in a collective the others never reach).  ``history``
    collects every evaluation's record (``last.pt`` carries them into a resumed run's results);
    ``record_extra`` goes into each record (e.g. ``{"fold": 2}``), and ``metric`` by name: what picks the best,
    which the sweep table reads.
    """

    def __init__(self, trainer: Trainer, evaluate_dev: Callable[[], dict], schedule: EvaluationSchedule, best: Best,
                 *, metric: str, patience: int | None, history: list[dict], record_extra: dict,
                 policies: Sequence[Callable[[Evaluation], None]]):
        self.trainer, self.evaluate_dev, self.schedule, self.best = trainer, evaluate_dev, schedule, best
        self.metric, self.patience, self.history, self.record_extra = metric, patience, history, record_extra
        self.policies = policies

    def __call__(self, step: int) -> bool:
        if not self.schedule.due(step):
            return False
        epoch = self.schedule.epoch_of(step)
        self.trainer.check_finite()  # a diverged model is neither scored nor saved
        scores = distributed.broadcast_object(self.evaluate_dev())
        improved = self.best.update(scores, self.metric, epoch, step)
        stop = self.patience is not None and self.best.stale >= self.patience
        record = {"split": "dev", **self.record_extra, "epoch": epoch, "step": step, "metric": self.metric, **scores,
                  **report_fields(scores)}
        self.history.append(record)
        evaluation = Evaluation(step, epoch, scores, improved, stop, record)
        for policy in self.policies:
            policy(evaluation)
        return stop
