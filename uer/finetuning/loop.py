"""The training of a fine-tuning run: one training session with dev evaluations, best.pt and last.pt.

:func:`fit` trains ``finetune.epochs_num`` epochs (or ``finetune.max_steps`` steps) in a
:class:`~uer.training.session.TrainingSession` -- the one pre-training uses too -- whose
callback scores the dev data when due (:mod:`uer.finetuning.evaluation`: after every epoch,
every ``finetune.eval_every_steps`` steps and at the last step; early stopping).  Each
evaluation is logged, saved and recorded by the policies of :mod:`uer.finetuning.policies`:
the best one so far is kept as ``best.pt``, and ``last.pt`` gets the whole state (see
:mod:`uer.finetuning.checkpoints`), from which ``resume=true`` continues a killed run to
the same weights an uninterrupted run ends with.

Every evaluation's scores are logged and recorded in ``results.jsonl``; where the task has
a per-class report (:meth:`uer.tasks.Task.report`: each label's or entity type's precision,
recall and F1, a classifier's confusion matrix) it follows as a table in the log, under
``report`` in the record and as ``dev/report`` text for the logger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from uer import distributed
from uer.errors import UerError
from uer.finetuning.checkpoints import BEST, LAST, files_fingerprint
from uer.finetuning.evaluation import Best, DevEvaluations, EvaluationSchedule
from uer.finetuning.policies import LogEvaluation, RecordEvaluation, SaveBestAndLast
from uer.finetuning.results import restore_records
from uer.finetuning.setup import Setup
from uer.io.checkpoint import load_checkpoint
from uer.progress import short_path
from uer.training import fsdp
from uer.training.resume import check_resumable, run_facts
from uer.training.session import TrainingSession

log = logging.getLogger("uer.finetune")


@dataclass(frozen=True)
class FitOutputs:
    """Where one :func:`fit` writes, and how its lines and records are told apart from other fits'."""

    model_dir: Path  # best.pt and last.pt
    report_dir: Path  # results.jsonl
    progress_dir: Path | None = None  # metrics.jsonl and the logger's files; None: report_dir
    name: str = ""  # prefixes the log lines, e.g. "fold 2/5"
    record_extra: dict = field(default_factory=dict)  # goes into every results.jsonl record, e.g. {"fold": 2}


def fit(setup: Setup, model: nn.Module, batches, evaluate_dev: Callable[[nn.Module], dict], outputs: FitOutputs, *,
        metric: str, data_files: list, checkpoint_config: dict) -> Best:
    """Train ``model`` on ``batches``, scoring it with ``evaluate_dev(model)`` (see the module docstring).

    ``batches`` has ``batches_per_epoch``, ``next_batch()`` and ``state_dict()``/``load_state_dict()``
    (the data position).  ``evaluate_dev`` returns flat ``{name: float}`` scores holding ``metric`` of the
    model it gets: ``model`` itself, or under ``hardware.strategy=fsdp`` an unsharded copy holding its full
    weights (:meth:`~uer.training.session.TrainingSession.scoring_model`).  With ``resume=true`` training
    continues from ``outputs.model_dir/last.pt``, if there is one (a finished run trains no further).
    ``data_files`` are the files the run learns from; a resumed run checks they did not change.  Checkpoints
    record ``checkpoint_config``.
    """
    cfg, f = setup.cfg, setup.cfg.finetune
    if batches.batches_per_epoch < f.accumulation_steps:
        raise UerError(f"finetune.accumulation_steps={f.accumulation_steps} exceeds the {batches.batches_per_epoch} "
                       f"batches of one epoch; lower it or finetune.batch_size")
    schedule = EvaluationSchedule(batches.batches_per_epoch // f.accumulation_steps, f)
    best = Best(outputs.model_dir / BEST)
    history: list[dict] = []  # every dev record so far: last.pt carries them into a resumed run's results
    last_path = outputs.model_dir / LAST
    patience = f.early_stopping_patience
    prefix = f"{outputs.name} " if outputs.name else ""
    facts = run_facts(setup.env.world_size, files_fingerprint(data_files))
    payload = None
    if (cfg.resume or distributed.restarted()) and last_path.is_file():
        # its weights go into the model before the session shards it
        payload = resumable_checkpoint(last_path)
        check_resumable(payload, checkpoint_config, facts, cfg.resume_allow_changes)
        model.load_state_dict(payload["model"])
    with TrainingSession(cfg, model, f, total_steps=schedule.total_steps,
                         report_dir=outputs.progress_dir or outputs.report_dir, env=setup.env, device=setup.device,
                         facts=facts) as session:
        if payload is not None:
            history = resume(last_path, payload, session, batches, best)
            if setup.env.is_main:
                restore_records(outputs.report_dir, history, session.reporter)
        if session.trainer.step >= schedule.total_steps or (patience is not None and best.stale >= patience):
            log.info("%snothing to train: %s is already at the end of training (step %d)", prefix, last_path,
                     session.trainer.step)
        else:
            is_main = setup.env.is_main
            policies = [LogEvaluation(schedule, metric=metric, patience=patience, name=outputs.name, enabled=is_main),
                        SaveBestAndLast(session, setup, batches, best, history, last_path=last_path,
                                        config=checkpoint_config),
                        RecordEvaluation(outputs.report_dir, session.reporter, enabled=is_main)]
            evaluations = DevEvaluations(session.trainer, lambda: evaluate_dev(session.scoring_model()), schedule,
                                         best, metric=metric, patience=patience, history=history,
                                         record_extra=outputs.record_extra, policies=policies)
            session.fit(batches.next_batch, schedule.total_steps, [evaluations])
    log.info("%sbest dev %s %.4f at epoch %s (step %d); saved %s", prefix, metric, best.score, best.epoch, best.step,
             short_path(best.path))
    return best


def resumable_checkpoint(last_path: Path) -> dict:
    """``last.pt`` read and verified, refused unless it holds the fine-tuning state a run resumes from (and,
    when its optimizer state is sharded, the shards it recorded)."""
    payload = load_checkpoint(last_path)
    state = payload.get("trainer")
    if not state or "best" not in state:
        raise UerError(f"{last_path} holds no fine-tuning state to resume from; drop resume=true, or use the "
                       "last.pt of the run to continue")
    try:
        fsdp.check_shards(last_path, state["optimizer"])
    except UerError as err:
        raise UerError(f"{last_path} cannot be resumed: {err}; train again into another output_model_path") \
            from None
    return payload


def resume(last_path: Path, payload: dict, session: TrainingSession, batches, best: Best) -> list[dict]:
    """Continue the run from ``payload``, the checked ``last.pt`` whose weights the model holds: optimizer,
    schedule, step, random state, data position and best so far; returns its evaluations so far."""
    state = payload["trainer"]
    session.restore(state, batches, last_path)
    best.load_state_dict(state["best"])
    log.info("resumed from step %d of %s", session.trainer.step, last_path)
    return list(state["evaluations"])
