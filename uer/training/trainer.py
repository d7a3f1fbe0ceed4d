"""The one training loop, shared by pre-training and fine-tuning.

A stage hands the Trainer a model whose forward takes a batch dict and returns
``.loss`` and ``.stats``, a source of micro-batches, and hooks; the Trainer owns
precision, gradient accumulation, clipping, the optimiser/schedule step, progress
reports and the resumable state (step, optimiser, schedule, RNG).
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Callable, Iterable

import torch
from torch import nn

from uer import distributed
from uer.runtime import autocast
from uer.training.report import Reporter

log = logging.getLogger("uer.train")


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


class Trainer:
    def __init__(self, model: nn.Module, optimizer, scheduler, *, device: torch.device, precision: str,
                 accumulation_steps: int, max_grad_norm: float, reporter: Reporter):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.precision = precision
        self.accumulation_steps = accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.reporter = reporter
        self.autocast = lambda: autocast(device, precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.step = 0

    def train_step(self, micro_batches: Iterable[dict]) -> None:
        """One optimiser step over ``accumulation_steps`` micro-batches."""
        self.model.train()
        micro_batches = list(micro_batches)
        for index, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            # Under DDP only the last micro-batch all-reduces gradients; the others accumulate locally.
            final = index == len(micro_batches) - 1
            sync = contextlib.nullcontext() if final or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self.autocast():
                    out = self.model(batch)
                self.scaler.scale(out.loss / len(micro_batches)).backward()
            self.reporter.add(out.stats, batch["src"])
        if self.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def fit(self, next_batch: Callable[[], dict], end_step: int, report_steps: int,
            on_step_end: Callable[[int], bool | None] | None = None) -> dict | None:
        """Train until ``self.step == end_step``, or until ``on_step_end(step)`` returns True (early
        stopping); returns the last report (a stopped run reports its last steps too)."""
        last = None
        while self.step < end_step:
            self.train_step(next_batch() for _ in range(self.accumulation_steps))
            self.reporter.step_done(self.step)
            reported = self.step % report_steps == 0 or self.step == end_step
            if reported:
                last = self.reporter.report(self.step, self.scheduler.get_last_lr()[0])
            if on_step_end is not None and on_step_end(self.step):
                if not reported:
                    last = self.reporter.report(self.step, self.scheduler.get_last_lr()[0])
                break
        return last

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            # Each rank draws its own dropout masks: every rank's generators, so all of them resume.
            "rng_per_rank": distributed.all_gather_object(rng),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        per_rank = state.get("rng_per_rank") or [state["rng"]]  # "rng": rank 0's, in older checkpoints
        rank, world_size = distributed.current_rank_and_size()
        rng = per_rank[rank] if len(per_rank) == world_size else per_rank[0]
        if len(per_rank) != world_size:
            log.warning("the checkpoint was written by %d processes, this run has %d: every rank continues "
                        "rank 0's random streams", len(per_rank), world_size)
        torch.set_rng_state(rng["torch"])
        random.setstate(_as_random_state(rng["python"]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def _as_random_state(state):
    """``random.setstate`` wants tuples; a checkpoint round-trip may hand back lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
