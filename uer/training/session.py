"""One training session: what pre-training, fine-tuning, each fold of cross-validation and
multi-task fine-tuning put together the same way.

A :class:`TrainingSession` builds, in this order (the order the random state and a resumed
run's checkpoint expect), the optimizer, the learning-rate schedule, the progress
:class:`~uer.training.report.Reporter` and the :class:`~uer.training.trainer.Trainer`, which
trains the model under DDP and ``torch.compile`` as ``hardware`` asks
(:func:`uer.training.process.training_model`); under ``hardware.strategy=fsdp`` the session
shards the model first (:mod:`uer.training.fsdp`).  It restores a resumable checkpoint's trainer
state and gathers the state such a checkpoint records; leaving it (``with``) closes the
reporter and, when training ended without an error, waits for every rank.

What happens around the steps is the caller's: :meth:`TrainingSession.fit` calls each
callback with the step after every optimizer step (pre-training writes ``step_N.pt``;
fine-tuning evaluates, then logs, saves and records each evaluation), and stops early once
any callback returns True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from uer import distributed
from uer.distributed import DistEnv
from uer.training import fsdp
from uer.training.optim import build_optimizer, build_scheduler
from uer.training.process import training_model
from uer.training.report import Reporter
from uer.training.trainer import Trainer

Callback = Callable[[int], bool | None]


class TrainingSession:
    """The optimizer, schedule, reporter and trainer of ``model`` for one run.

    ``settings`` is the stage's section (``cfg.pretrain``, ``cfg.finetune``): its
    ``learning_rate``, ``accumulation_steps``, ``max_grad_norm`` and ``report_steps``.
    ``facts`` (:func:`uer.training.resume.run_facts`) go into every resumable checkpoint.
    Progress reports go to ``report_dir``.
    """

    def __init__(self, cfg: DictConfig, model: nn.Module, settings, *, total_steps: int, report_dir: Path,
                 env: DistEnv, device: torch.device, facts: dict):
        self.env = env
        self.facts = facts
        self.report_steps = settings.report_steps
        if fsdp.sharded(cfg.hardware, env):  # in place, before the optimizer is built on its parameters
            model = fsdp.shard(model, cfg.hardware.precision, device)
        self.model = model
        self.optimizer = build_optimizer(cfg.optimizer, model, settings.learning_rate)
        self.scheduler = build_scheduler(cfg.lr_scheduler, self.optimizer, total_steps)
        self.reporter = Reporter(report_dir, total_steps, enabled=env.is_main, logger=cfg.logger,
                                 reduce_device=device)
        self.trainer = Trainer(model, self.optimizer, self.scheduler, device=device, precision=cfg.hardware.precision,
                               accumulation_steps=settings.accumulation_steps, max_grad_norm=settings.max_grad_norm,
                               reporter=self.reporter,
                               wrap=lambda module: training_model(module, cfg.hardware, env, device))

    def __enter__(self) -> "TrainingSession":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.reporter.close()
        if exc_type is None:  # a failing rank enters no collective: its barrier would pair with the others'
            distributed.barrier()  # gradient all-reduce and the run would wait for the process-group timeout

    def restore(self, state: dict, data, checkpoint: Path) -> None:
        """Continue from the trainer ``state`` of ``checkpoint``: optimizer (a sharded model's from the shards
        beside it), schedule, step, random state, and the position of ``data`` (a batch source with
        ``load_state_dict``)."""
        fsdp.check_resumed_strategy(checkpoint, state["optimizer"], self.trainer.sharded)
        if self.trainer.sharded:
            fsdp.load_optimizer(self.model, self.optimizer, checkpoint, state["optimizer"])
        self.trainer.load_state_dict(state)
        data.load_state_dict(state["data"])

    def model_state(self) -> dict:
        """The model's full weights (a sharded model's gathered to the main rank, the others get an empty
        dict); every rank calls it."""
        return fsdp.full_model_state(self.model)

    def scoring_model(self) -> nn.Module:
        """The model to score: the trained one itself, or a sharded one's full weights gathered onto every rank
        in an unsharded copy of it (:func:`uer.training.fsdp.unsharded`); every rank calls it."""
        if not self.trainer.sharded:
            return self.model
        return fsdp.unsharded(self.model, fsdp.full_model_state(self.model, every_rank=True))

    def checkpoint_state(self, data, checkpoint: Path, *, shards: Path | None = None, **extra) -> dict | None:
        """The trainer state the resumable ``checkpoint`` records, with the position of ``data``, the run's
        facts and ``extra`` (a sharded model's optimizer state is written beside it now, into ``shards``: by
        default :func:`uer.training.fsdp.shards_path`); every rank calls it (it gathers each rank's random
        state), the main rank gets it, the others None."""
        state = self.trainer.state_dict()
        if self.trainer.sharded:
            state["optimizer"] = fsdp.save_optimizer(self.model, self.optimizer, checkpoint, shards)
        if not self.env.is_main:
            return None
        state.update(data=data.state_dict(), run=self.facts, **extra)
        return state

    def fit(self, next_batch: Callable[[], dict], end_step: int, callbacks: Sequence[Callback]) -> dict | None:
        """Train until ``end_step`` or until a callback asks to stop; returns the last progress report."""
        def on_step_end(step: int) -> bool:
            stops = [callback(step) for callback in callbacks]  # each runs at every step, even after a stop
            return any(stops)

        return self.trainer.fit(next_batch, end_step, self.report_steps, on_step_end)
