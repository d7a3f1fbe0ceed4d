"""The optimizer and learning-rate schedule groups (``optimizer=``, ``lr_scheduler=``).

Each option registers a builder with its schema.  The peak learning rate is the stage's
(``pretrain.learning_rate``, ``finetune.learning_rate``): it is what sweeps change most.
Weight decay never applies to 1-D tensors (biases, LayerNorm gains and shifts), as in BERT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from uer.config.fields import FRACTION, NON_NEGATIVE, POSITIVE, setting
from uer.registry import Registry
from uer.training.adamw_uncorrected import UncorrectedAdamW
from uer.training.lamb import Lamb

OPTIMIZERS: Registry = Registry("optimizer", group="optimizer")
SCHEDULERS: Registry = Registry("lr_scheduler", group="lr_scheduler")


@dataclass
class AdamMomentsConfig:
    """What the Adam family shares: the decays of the two moment averages and the denominator's epsilon."""

    type: str = setting(MISSING, "the optimizer (pick with optimizer=)")
    beta1: float = setting(0.9, "decay of the first-moment average", bounds=FRACTION)
    beta2: float = setting(0.999, "decay of the second-moment average", bounds=FRACTION)
    eps: float = setting(1e-6, "added to the denominator (0 divides by zero where a moment is 0)", bounds=POSITIVE)


@dataclass
class AdamWConfig(AdamMomentsConfig):
    """``optimizer=adamw``: AdamW with decoupled weight decay (torch's fused kernel where it can run)."""

    weight_decay: float = setting(0.01, "decoupled weight decay (not on biases and LayerNorm)", bounds=NON_NEGATIVE)
    bias_correction: bool = setting(True, "Adam's bias correction of the moment averages; false = the optimizer of "
                                          "Google's BERT and the original UER-py (a several-fold larger early step: "
                                          "uer/training/adamw_uncorrected.py)")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@OPTIMIZERS.register("adamw", config=AdamWConfig)
def adamw(cfg: AdamWConfig, model: nn.Module, learning_rate: float):
    groups = parameter_groups(model, cfg.weight_decay)
    if not cfg.bias_correction:
        return UncorrectedAdamW(groups, lr=learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    # The fused kernel updates all tensors in one pass: about 6x faster than the default on
    # CPU, which is a quarter of a size=tiny step.  It needs floating-point params on CPU/CUDA.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


@dataclass
class LambConfig(AdamMomentsConfig):
    """``optimizer=lamb``: LAMB, Adam's step scaled per tensor by ||weights|| / ||step|| (large-batch pre-training)."""

    weight_decay: float = setting(0.01, "decoupled weight decay, inside the trust ratio (not on biases and LayerNorm)",
                                  bounds=NON_NEGATIVE)


@OPTIMIZERS.register("lamb", config=LambConfig)
def lamb(cfg: LambConfig, model: nn.Module, learning_rate: float):
    return Lamb(parameter_groups(model, cfg.weight_decay), lr=learning_rate, betas=(cfg.beta1, cfg.beta2),
                eps=cfg.eps)


@dataclass
class WarmupScheduleConfig:
    """``lr_scheduler=linear|cosine|constant|inverse_sqrt``: linear warm-up to the peak, then the schedule's decay."""

    type: str = setting(MISSING, "the schedule (pick with lr_scheduler=)")
    warmup: float = setting(0.1, "fraction of all steps with linear warm-up from 0 to the peak", bounds=FRACTION)


def warmup_schedule(cfg: WarmupScheduleConfig, optimizer, total_steps: int, decay):
    """LR multiplier rising linearly over ``warmup * total_steps`` steps to 1, then ``decay(t, warmup_steps)``.

    ``t`` is the 1-based number of the update the multiplier is for: the first update of a
    warm-up of ``w`` steps uses ``1/w`` of the peak, update ``w`` the peak itself.
    """
    warmup_steps = int(total_steps * cfg.warmup)

    def factor(step: int) -> float:
        t = step + 1
        return t / warmup_steps if t <= warmup_steps else decay(t, warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULERS.register("linear", config=WarmupScheduleConfig)
def linear(cfg: WarmupScheduleConfig, optimizer, total_steps: int):
    """After warm-up, linear decay from the peak to 0 at ``total_steps`` (BERT)."""
    return warmup_schedule(cfg, optimizer, total_steps,
                           lambda t, w: max(0.0, (total_steps - t + 1) / (total_steps - w)))


@SCHEDULERS.register("cosine", config=WarmupScheduleConfig)
def cosine(cfg: WarmupScheduleConfig, optimizer, total_steps: int):
    """After warm-up, half a cosine from the peak down to 0 at ``total_steps``."""
    def decay(t: int, w: int) -> float:
        progress = min(1.0, (t - 1 - w) / (total_steps - w))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return warmup_schedule(cfg, optimizer, total_steps, decay)


@SCHEDULERS.register("constant", config=WarmupScheduleConfig)
def constant(cfg: WarmupScheduleConfig, optimizer, total_steps: int):
    """After warm-up, the peak until the end."""
    return warmup_schedule(cfg, optimizer, total_steps, lambda t, w: 1.0)


@SCHEDULERS.register("inverse_sqrt", config=WarmupScheduleConfig)
def inverse_sqrt(cfg: WarmupScheduleConfig, optimizer, total_steps: int):
    """After warm-up, the peak times ``sqrt(warmup_steps / t)`` at update ``t`` (fairseq, the Transformer);
    without warm-up ``1 / sqrt(t)``."""
    return warmup_schedule(cfg, optimizer, total_steps, lambda t, w: math.sqrt(max(w, 1) / t))


def build_optimizer(cfg, model: nn.Module, learning_rate: float):
    """The optimizer ``cfg`` (an ``optimizer`` config) describes, over ``model``'s parameters."""
    cfg = OPTIMIZERS.build_config(cfg)
    return OPTIMIZERS.lookup(cfg.type)(cfg, model, learning_rate)


def build_scheduler(cfg, optimizer, total_steps: int):
    """The schedule ``cfg`` (an ``lr_scheduler`` config) describes, over ``total_steps`` optimizer steps."""
    cfg = SCHEDULERS.build_config(cfg)
    return SCHEDULERS.lookup(cfg.type)(cfg, optimizer, total_steps)

