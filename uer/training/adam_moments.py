"""The part Adam-family optimizers share: the moving averages of each gradient and its square.

A subclass defines only ``update(param, state, group)``, the in-place change of one parameter
from its averages (which already include this step's gradient); the hyper-parameters
(``lr``, ``betas``, ``eps``, ``weight_decay``) are per group, and the state (``step``,
``exp_avg``, ``exp_avg_sq``) is what a checkpoint saves.
"""

from __future__ import annotations

import torch


class AdamMoments(torch.optim.Optimizer):
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
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(param.grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                self.update(param, state, group)
        return loss

