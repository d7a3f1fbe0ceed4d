"""The training of a fine-tuning run: batches of one file, dev evaluations, best.pt and last.pt, scores.

:func:`fit` trains ``finetune.epochs_num`` epochs (or ``finetune.max_steps`` steps) and
scores the dev data after every epoch, every ``finetune.eval_every_steps`` steps and at
the last step.  Each evaluation is logged and recorded in ``results.jsonl``; the best one
so far is kept as ``best.pt``, and ``last.pt`` gets the whole state (see
:mod:`uer.finetuning.checkpoints`), from which ``resume=true`` continues a killed run to
the same weights an uninterrupted run ends with.  ``finetune.early_stopping_patience``
ends training after that many evaluations in a row without a better dev score.

Every evaluation's scores are logged and recorded in ``results.jsonl``; where the task has
a per-class report (:meth:`uer.tasks.Task.report`: each label's or entity type's precision,
recall and F1, a classifier's confusion matrix) it follows as a table in the log, under
``report`` in the record and as ``dev/report`` text for the logger.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from uer import distributed
from uer.data.sampler import EpochSampler
from uer.distributed import DistEnv
from uer.errors import UerError
from uer.finetuning.checkpoints import BEST, LAST, files_fingerprint
from uer.finetuning.setup import Setup
from uer.io.atomic import reporting_write_errors
from uer.io.checkpoint import load_checkpoint, save_checkpoint
from uer.progress import short_path
from uer.stages.common import training_model
from uer.stages.resume import check_resumable
from uer.tasks import Task, TaskData, predict
from uer.tasks.metrics import report_table
from uer.training.optim import build_optimizer, build_scheduler
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.finetune")

RESULTS = "results.jsonl"


class SampledBatches:
    """Collated batches of ``examples``, each epoch a fresh permutation drawn from ``seed``.

    An epoch is ``len(examples) // batch_size`` batches.  With ``length_bucketing`` the
    sampler groups rows of similar length (``task.length``) into batches, visited in
    random order (:mod:`uer.data.sampler`): a batch is padded to its longest row, so this
    cuts the padding that a few long rows otherwise add to most batches.
    """

    def __init__(self, task: Task, examples: list, batch_size: int, seed: int, *, source: str,
                 length_bucketing: bool = False, env: DistEnv = DistEnv()):
        self.task = task
        self.examples = examples
        lengths = np.array([task.length(example) for example in examples]) if length_bucketing else None
        self.sampler = EpochSampler(len(examples), batch_size, seed, source=source, lengths=lengths,
                                    rank=env.rank, world_size=env.world_size)
        self.batches_per_epoch = self.sampler.batches_per_epoch

    def next_batch(self) -> dict:
        indices, _ = self.sampler.next_indices()
        return self.task.collate([self.examples[i] for i in indices.tolist()])

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


@dataclass
class Best:
    """The best dev evaluation of a :func:`fit` so far, and how many evaluations since did not beat it."""

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


def fit(setup: Setup, model: nn.Module, batches, evaluate_dev: Callable[[], dict], *, metric: str, model_dir: Path,
        data_files: list, report_dir: Path, checkpoint_config: dict, progress_dir: Path | None = None,
        name: str = "", record_extra: dict | None = None) -> Best:
    """Train ``model`` on ``batches``, scoring it with ``evaluate_dev()`` (see the module docstring).

    ``batches`` has ``batches_per_epoch``, ``next_batch()`` and ``state_dict()``/``load_state_dict()``
    (the data position).  ``evaluate_dev`` returns flat ``{name: float}`` scores holding
    ``metric``; each evaluation is recorded in ``report_dir/results.jsonl`` (with
    ``record_extra``, and ``metric`` by name: what picks the best).  ``model_dir`` gets ``best.pt`` and ``last.pt``; with ``resume=true``
    training continues from its ``last.pt``, if there is one (a finished run trains no
    further).  ``data_files`` are the files the run learns from; a resumed run checks they
    did not change.  Training progress goes to ``progress_dir`` (default ``report_dir``).
    ``name`` prefixes the log lines (e.g. ``fold 2/5``).
    """
    cfg, f = setup.cfg, setup.cfg.finetune
    if batches.batches_per_epoch < f.accumulation_steps:
        raise UerError(f"finetune.accumulation_steps={f.accumulation_steps} exceeds the {batches.batches_per_epoch} "
                       f"batches of one epoch; lower it or finetune.batch_size")
    steps_per_epoch = batches.batches_per_epoch // f.accumulation_steps
    total_steps = f.max_steps or steps_per_epoch * f.epochs_num
    optimizer = build_optimizer(cfg.optimizer, model, f.learning_rate)
    scheduler = build_scheduler(cfg.lr_scheduler, optimizer, total_steps)
    reporter = Reporter(progress_dir or report_dir, total_steps, enabled=setup.env.is_main, logger=cfg.logger,
                        reduce_device=setup.device)
    trainer = Trainer(model, optimizer, scheduler, device=setup.device, precision=cfg.hardware.precision,
                      accumulation_steps=f.accumulation_steps, max_grad_norm=f.max_grad_norm, reporter=reporter)
    best = Best(model_dir / BEST)
    evaluations: list[dict] = []  # every dev record so far: last.pt carries them into a resumed run's results
    facts = {"world_size": setup.env.world_size, "dataset": files_fingerprint(data_files)}
    last_path = model_dir / LAST
    if (cfg.resume or distributed.restarted()) and last_path.is_file():
        evaluations = resume(last_path, model, trainer, batches, best, config=checkpoint_config, facts=facts,
                             allowed=cfg.resume_allow_changes)
        if setup.env.is_main:
            restore_records(report_dir, evaluations, reporter)
    trainer.model = training_model(model, cfg.hardware, setup.env, setup.device)
    patience = f.early_stopping_patience
    prefix = f"{name} " if name else ""

    def epoch_of(step: int) -> float:
        return step // steps_per_epoch if step % steps_per_epoch == 0 else round(step / steps_per_epoch, 2)

    def evaluation_due(step: int) -> bool:
        every = f.eval_every_steps
        return step % steps_per_epoch == 0 or step == total_steps or (every is not None and step % every == 0)

    def on_step_end(step: int) -> bool:
        """Evaluate when due; True to stop early."""
        if not evaluation_due(step):
            return False
        epoch = epoch_of(step)
        trainer.check_finite()  # a diverged model is neither scored nor saved
        scores = evaluate_dev()  # every rank scores the whole dev set, so all agree on the best and on stopping
        improved = best.update(scores, metric, epoch, step)
        stop = patience is not None and best.stale >= patience
        entry = {"split": "dev", **(record_extra or {}), "epoch": epoch, "step": step, "metric": metric, **scores,
                 **report_fields(scores)}
        evaluations.append(entry)
        state = trainer.state_dict()  # on every rank: it gathers each rank's random state
        if not setup.env.is_main:
            return stop
        log.info("%sepoch %s%s (step %d/%d) dev: %s%s", prefix, epoch, "" if f.max_steps else f"/{f.epochs_num}", step,
                 total_steps, format_scores(scores), " (best so far)" if improved else "")
        log_report(f"{prefix}epoch {epoch} dev", scores)
        if improved:
            save_checkpoint(best.path, model_state=model.state_dict(), config=checkpoint_config,
                            tokenizer=setup.tokenizer, trainer=None, task_info=dict(setup.task.info))
        state.update(data=batches.state_dict(), run=facts, best=best.state_dict(), evaluations=evaluations)
        save_checkpoint(last_path, model_state=model.state_dict(), config=checkpoint_config,
                        tokenizer=setup.tokenizer, trainer=state, task_info=dict(setup.task.info))
        record(report_dir, entry)
        reporter.scalars("dev", scores, step)
        if getattr(scores, "report", None):
            reporter.text("dev/report", report_table(scores.report), step)
        if stop and step < total_steps:
            log.info("%searly stopping at step %d: no better dev %s in %d evaluations", prefix, step, metric, patience)
        return stop

    try:
        if trainer.step >= total_steps or (patience is not None and best.stale >= patience):
            log.info("%snothing to train: %s is already at the end of training (step %d)", prefix, last_path,
                     trainer.step)
        else:
            trainer.fit(batches.next_batch, total_steps, f.report_steps, on_step_end)
    finally:
        reporter.close()
        trainer.model = None  # drop the DDP wrapper before the process group goes
        distributed.barrier()
    log.info("%sbest dev %s %.4f at epoch %s (step %d); saved %s", prefix, metric, best.score, best.epoch, best.step,
             short_path(best.path))
    return best


def resume(last_path: Path, model: nn.Module, trainer: Trainer, batches, best: Best, *, config: dict, facts: dict,
           allowed) -> list[dict]:
    """Load ``last.pt`` into the run: weights, optimizer, schedule, step, random state, data position and
    best so far, once its settings are checked against this run's; returns its evaluations so far."""
    payload = load_checkpoint(last_path)
    state = payload.get("trainer")
    if not state or "best" not in state:
        raise UerError(f"{last_path} holds no fine-tuning state to resume from; drop resume=true, or use the "
                       "last.pt of the run to continue")
    check_resumable(payload, config, facts, allowed)
    model.load_state_dict(payload["model"])
    trainer.load_state_dict(state)
    batches.load_state_dict(state["data"])
    best.load_state_dict(state["best"])
    log.info("resumed from step %d of %s", trainer.step, last_path)
    return list(state["evaluations"])


def restore_records(report_dir: Path, evaluations: list[dict], reporter: Reporter) -> None:
    """Write the dev records of a resumed run's earlier part that ``report_dir/results.jsonl`` lacks
    (a resumed run usually has a new run directory), so its results show every evaluation."""
    path = report_dir / RESULTS
    present = set()
    if path.is_file():
        present = {(entry.get("fold"), entry.get("step")) for entry in map(json.loads, path.read_text().splitlines())
                   if entry.get("split") == "dev"}
    for entry in evaluations:
        if (entry.get("fold"), entry["step"]) not in present:
            record(report_dir, entry)
            reporter.scalars("dev", {k: v for k, v in entry.items() if k not in ("split", "fold", "epoch", "step", "report")},
                             entry["step"])




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


def record(directory: Path, entry: dict) -> None:
    """Append ``entry`` as one JSON line to ``directory/results.jsonl``."""
    with reporting_write_errors(directory / RESULTS):
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / RESULTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def format_scores(scores: dict[str, float]) -> str:
    return " | ".join(f"{name} {value:.4f}" for name, value in scores.items())
