"""The one training loop, shared by pre-training and fine-tuning.

A training session (:mod:`uer.training.session`) hands the Trainer a model whose forward
takes a batch dict and returns ``.loss`` and ``.stats``, a source of micro-batches, and
hooks; the Trainer owns precision, gradient accumulation, clipping, the optimiser/schedule
step, progress reports, the resumable state (step, optimiser, schedule, RNG) and the
model's wrap for training (DDP, ``torch.compile``; an FSDP model comes sharded, see
:mod:`uer.training.fsdp`): :meth:`Trainer.fit` trains the wrapped model and drops the wrapper
when it returns, before the process group goes.

A loss or gradient norm that is not finite (nan, inf) stops the run.  Whether each step's
are finite is noted on the device without waiting for it, so watching costs no
synchronisation; :meth:`Trainer.check_finite` reads the notes after every step on a CPU,
and on an accelerator at every report, before every checkpoint and evaluation (the
stages call it), and at the end.  The run then stops with one line naming the first such step.  Under
``hardware.precision=fp16`` an overflowing gradient is the grad scaler's to handle (it
skips that step and lowers the scale), so only the loss is watched there.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Callable, Iterable

import torch
from torch import nn

from uer import distributed
from uer.errors import UerError
from uer.runtime import autocast
from uer.training.fsdp import is_sharded
from uer.training.report import Reporter

log = logging.getLogger("uer.train")

LOSS, NORM = 1, 2  # what was not finite (bits)
_NEVER = 2 ** 62  # the step of "no non-finite value yet", negated


def to_device(batch: dict, device: torch.device) -> dict:
    """``batch`` on ``device``.  Bound for a GPU, host tensors are pinned first: a copy from pageable
    memory is synchronous whatever ``non_blocking`` says (pre-training's prefetcher pins already)."""
    pin = device.type == "cuda"
    return {key: (value.pin_memory() if pin and not value.is_pinned() else value).to(device, non_blocking=True)
            for key, value in batch.items()}


class Trainer:
    def __init__(self, model: nn.Module, optimizer, scheduler, *, device: torch.device, precision: str,
                 accumulation_steps: int, max_grad_norm: float, reporter: Reporter,
                 wrap: Callable[[nn.Module], nn.Module] | None = None):
        """``wrap``: what :meth:`fit` trains in place of ``model`` (None: ``model`` itself)."""
        self.model = model
        self.wrap = wrap
        self._train_model = model  # what train_step runs: the wrapped model during fit
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
        # (step, whether its loss and gradient norm are finite) of the steps since the last check, on the device.
        self._unchecked: list[tuple[int, torch.Tensor]] = []
        self._unchecked_lr: dict[int, float] = {}  # the learning rate each unchecked step used (ranks share it)
        self._check_each_step = device.type == "cpu" and not torch.distributed.is_initialized()

    @property
    def sharded(self) -> bool:
        """Whether the model is FSDP-sharded (hardware.strategy=fsdp), and so each rank's optimizer state its own."""
        return is_sharded(self.model)

    def train_step(self, micro_batches: Iterable[dict]) -> None:
        """One optimiser step over ``accumulation_steps`` micro-batches."""
        model = self._train_model
        model.train()
        micro_batches = list(micro_batches)
        loss = None
        for index, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            # Only the last micro-batch reduces gradients across ranks; the others accumulate locally.
            with gradient_sync(model, index == len(micro_batches) - 1):
                with self.autocast():
                    out = model(batch)
                self.scaler.scale(out.loss / len(micro_batches)).backward()
            loss = out.loss.detach() if loss is None else loss + out.loss.detach()
            self.reporter.add(out.stats, batch["src"])
        norm = None
        if self.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = clip_gradients(model, self.max_grad_norm)
        self._note_nonfinite(loss, norm if not self.scaler.is_enabled() else None)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self._check_each_step:
            self.check_finite()

    def _note_nonfinite(self, loss: torch.Tensor, norm: torch.Tensor | None) -> None:
        """Keep (on the device, without a sync) whether this step's loss and gradient norm are finite."""
        values = loss.reshape(1) if norm is None else torch.stack((loss.float(), norm.float()))
        self._unchecked.append((self.step + 1, torch.isfinite(values)))
        self._unchecked_lr[self.step + 1] = self.scheduler.get_last_lr()[0]

    def check_finite(self) -> None:
        """A UerError naming the first step (on any rank) whose loss or gradient norm was not finite."""
        first = [-_NEVER, 0]  # -(step), what was not finite (LOSS | NORM): the ranks agree on the largest
        if self._unchecked:
            finite = torch.stack([flags for _, flags in self._unchecked]).cpu()
            bad = (~finite.all(dim=1)).nonzero()
            if len(bad):
                row = int(bad[0])
                what = sum(bit for bit, ok in zip((LOSS, NORM), finite[row].tolist()) if not ok)
                first = [-self._unchecked[row][0], what]
            self._unchecked.clear()
        learning_rates, self._unchecked_lr = self._unchecked_lr, {}
        if torch.distributed.is_initialized():  # every rank stops at the same check
            first = distributed.all_reduce_max(torch.tensor(first, device=self.device)).tolist()
        negated_step, what = first
        if what == 0:
            return
        named = " and ".join(name for bit, name in ((LOSS, "the loss"), (NORM, "the gradient norm")) if what & bit)
        learning_rate = learning_rates.get(-negated_step)
        causes = ["a learning rate too high" + (f" ({learning_rate:.3g} at that step)" if learning_rate is not None
                                                else ""), "bad input data"]
        if self.scaler.is_enabled():
            causes.insert(1, "fp16 overflow (hardware.precision=bf16 or fp32 cannot overflow)")
        raise UerError(f"training stopped: {named} became nan or inf at step {-negated_step}, so the model is broken "
                       f"from there on and none of it is saved; likely causes: {', '.join(causes)}")

    def fit(self, next_batch: Callable[[], dict], end_step: int, report_steps: int,
            on_step_end: Callable[[int], bool | None] | None = None) -> dict | None:
        """Train until ``self.step == end_step``, or until ``on_step_end(step)`` returns True (early
        stopping); returns the last report (a stopped run reports its last steps too).

        The model is wrapped here, after a resumed run has loaded its weights (DDP starts
        every rank from rank 0's), and the wrapper is dropped on the way out: a live DDP
        module can abort a gloo worker once the process group is gone.
        """
        if self.wrap is not None:
            self._train_model = self.wrap(self.model)
        try:
            return self._train(next_batch, end_step, report_steps, on_step_end)
        finally:
            self._train_model = self.model

    def _train(self, next_batch, end_step: int, report_steps: int, on_step_end) -> dict | None:
        last = None
        while self.step < end_step:
            self.train_step(next_batch() for _ in range(self.accumulation_steps))
            self.reporter.step_done(self.step)
            reported = self.step % report_steps == 0 or self.step == end_step
            if reported:
                self.check_finite()
                last = self.reporter.report(self.step, self.scheduler.get_last_lr()[0])
            if on_step_end is not None and on_step_end(self.step):
                if not reported:
                    self.check_finite()
                    last = self.reporter.report(self.step, self.scheduler.get_last_lr()[0])
                break
        self.check_finite()
        return last

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            # A sharded model's optimizer state is each rank's own: the session writes it beside the checkpoint.
            "optimizer": None if self.sharded else self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            # Each rank draws its own dropout masks: every rank's generators, so all of them resume.
            "rng_per_rank": distributed.all_gather_object(rng),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        if not self.sharded:
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
        restore_cuda_rng(rng.get("cuda"), self.device)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` of ``model``'s gradients: their total norm (on every rank of a sharded model).

    On a CPU the norm is at hand without a wait, so the gradients are multiplied only when the
    norm is above ``max_norm`` (the factor below 1, computed as torch computes it); torch
    multiplies every gradient by 1 otherwise, one pass over them all for nothing.
    """
    if is_sharded(model):  # sharded gradients: their norm is a DTensor; the norm over all, on every rank
        return nn.utils.clip_grad_norm_(model.parameters(), max_norm).full_tensor()
    parameters = [param for param in model.parameters() if param.grad is not None]
    if not parameters or parameters[0].device.type != "cpu":
        return nn.utils.clip_grad_norm_(parameters, max_norm)
    norm = nn.utils.get_total_norm([param.grad for param in parameters])
    if not bool(max_norm / (norm + 1e-6) >= 1.0):  # clip_grad_norm_'s factor, clamped to 1 (nan: multiplied too)
        nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def gradient_sync(model: nn.Module, sync: bool):
    """A context in which backward reduces gradients across ranks only if ``sync`` (DDP's ``no_sync``, FSDP's
    ``set_requires_gradient_sync``); without either, gradients are local anyway."""
    if is_sharded(model):
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    return model.no_sync() if not sync and hasattr(model, "no_sync") else contextlib.nullcontext()


def restore_cuda_rng(state, device: torch.device) -> None:
    """Give this rank's GPU the CUDA generator state a checkpoint saved for it (nothing on CPU).

    A checkpoint holds the saving rank's own device's state; older ones held every visible
    device's list, of which the entry of this device's ordinal (else the first) is taken, so a
    run resumes with fewer visible GPUs.  A checkpoint written on CPU has none: the generator
    keeps its seeded state and dropout masks differ from an uninterrupted run's, which is said."""
    if device.type != "cuda":
        return
    if state is None:
        log.warning("the checkpoint holds no CUDA generator state (written on CPU): dropout on %s continues from the "
                    "seed, so this run's masks differ from an uninterrupted run's", device)
        return
    if isinstance(state, (list, tuple)):
        index = device.index if device.index is not None else torch.cuda.current_device()
        state = state[index] if index < len(state) else state[0]
    torch.cuda.set_rng_state(state, device)


def _as_random_state(state):
    """``random.setstate`` wants tuples; a checkpoint round-trip may hand back lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
