"""The epochs of a fine-tuning run: batches of one file, dev evaluation, the best-epoch checkpoint, scores."""

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
from uer.finetuning.setup import Setup
from uer.io.atomic import reporting_write_errors
from uer.io.checkpoint import save_checkpoint
from uer.stages.common import training_model
from uer.tasks import Task, TaskData, predict
from uer.training.optim import build_optimizer, build_scheduler
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.finetune")

BEST = "best.pt"
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


@dataclass
class Best:
    """The best epoch of a :func:`fit`: its score on the selection metric, all its dev scores, the checkpoint."""

    path: Path
    score: float | None = None
    epoch: int | None = None
    scores: dict = field(default_factory=dict)


def fit(setup: Setup, model: nn.Module, batches, evaluate_dev: Callable[[], dict], *, metric: str, best_path: Path,
        report_dir: Path, checkpoint_config: dict, progress_dir: Path | None = None, name: str = "",
        record_extra: dict | None = None) -> Best:
    """Train ``finetune.epochs_num`` epochs of ``batches``; after each, ``evaluate_dev()`` and keep the best.

    ``batches`` has ``batches_per_epoch`` and ``next_batch()``.  ``evaluate_dev`` returns
    flat ``{name: float}`` scores holding ``metric``; each epoch's scores are logged and
    recorded in ``report_dir/results.jsonl`` (with ``record_extra``), and the best epoch's
    model is saved to ``best_path``.  Training progress goes to ``progress_dir`` (default
    ``report_dir``).  ``name`` prefixes the log lines (e.g. ``fold 2/5``).
    """
    cfg, f = setup.cfg, setup.cfg.finetune
    if batches.batches_per_epoch < f.accumulation_steps:
        raise UerError(f"finetune.accumulation_steps={f.accumulation_steps} exceeds the {batches.batches_per_epoch} "
                       f"batches of one epoch; lower it or finetune.batch_size")
    steps_per_epoch = batches.batches_per_epoch // f.accumulation_steps
    total_steps = steps_per_epoch * f.epochs_num
    optimizer = build_optimizer(cfg.optimizer, model, f.learning_rate)
    scheduler = build_scheduler(cfg.lr_scheduler, optimizer, total_steps)
    reporter = Reporter(progress_dir or report_dir, total_steps, enabled=setup.env.is_main,
                        reduce_device=setup.device)
    trainer = Trainer(model, optimizer, scheduler, device=setup.device, precision=cfg.hardware.precision,
                      accumulation_steps=f.accumulation_steps, max_grad_norm=f.max_grad_norm, reporter=reporter)
    trainer.model = training_model(model, cfg.hardware, setup.env, setup.device)
    best = Best(best_path)
    prefix = f"{name} " if name else ""

    def on_step_end(step: int) -> None:
        if step % steps_per_epoch:
            return
        epoch = step // steps_per_epoch
        trainer.check_finite()  # a diverged model is neither scored nor saved
        scores = evaluate_dev()  # every rank scores the whole dev set, so all agree on the best epoch
        improved = best.score is None or scores[metric] > best.score
        if improved:
            best.score, best.epoch, best.scores = scores[metric], epoch, dict(scores)
        if not setup.env.is_main:
            return
        log.info("%sepoch %d/%d dev: %s%s", prefix, epoch, f.epochs_num, format_scores(scores),
                 " (best so far)" if improved else "")
        record(report_dir, {"split": "dev", **(record_extra or {}), "epoch": epoch, "step": step, **scores})
        reporter.scalars("dev", scores, step)
        if improved:
            save_checkpoint(best_path, model_state=model.state_dict(), config=checkpoint_config,
                            tokenizer=setup.tokenizer, trainer=None, task_info=dict(setup.task.info))

    try:
        trainer.fit(batches.next_batch, total_steps, f.report_steps, on_step_end)
    finally:
        reporter.close()
        trainer.model = None  # drop the DDP wrapper before the process group goes
        distributed.barrier()
    log.info("%sbest dev %s %.4f at epoch %d; saved %s", prefix, metric, best.score, best.epoch, best_path)
    return best


def evaluate(setup: Setup, model: nn.Module, data: TaskData, labels_num: int | None) -> dict[str, float]:
    """The task's scores of ``model`` on labelled ``data``."""
    return setup.task.evaluate(model_outputs(setup, model, data), data, labels_num)


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
