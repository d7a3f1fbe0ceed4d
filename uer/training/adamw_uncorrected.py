"""AdamW without bias correction: the optimizer Google's BERT and the original UER-py train with.

The step is ``lr * m / (sqrt(v) + eps)`` on the raw moving averages, then decoupled decay
``p -= lr * weight_decay * p``.  Early on ``m / sqrt(v)`` is not the unit-scale ratio Adam's
correction restores: with betas (0.9, 0.999) it is about 3.2x at step 1, 6.5x at step 10,
3.2x at step 100, 1.9x at step 300 and 1.26x at step 1000, so at the same ``lr`` short runs
train with a several-fold larger step than ``torch.optim.AdamW`` (``optimizer.bias_correction``).
"""

from __future__ import annotations

import torch


class UncorrectedAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, decay = group["lr"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(param.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                param.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-lr)
                if decay:
                    param.mul_(1 - lr * decay)
        return loss
