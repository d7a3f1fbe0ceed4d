"""AdamW without bias correction: the optimizer Google's BERT and the original UER-py train with.

The step is ``lr * m / (sqrt(v) + eps)`` on the raw moving averages, then decoupled decay
``p -= lr * weight_decay * p``.  Early on ``m / sqrt(v)`` is not the unit-scale ratio Adam's
correction restores: with betas (0.9, 0.999) it is about 3.2x at step 1, 6.5x at step 10,
3.2x at step 100, 1.9x at step 300 and 1.26x at step 1000, so at the same ``lr`` short runs
train with a several-fold larger step than ``torch.optim.AdamW`` (``optimizer.bias_correction``).
"""

from __future__ import annotations

import torch

from uer.training.adam_moments import AdamMoments


class UncorrectedAdamW(AdamMoments):
    def update(self, param: torch.Tensor, state: dict, group: dict) -> None:
        lr, decay = group["lr"], group["weight_decay"]
        param.addcdiv_(state["exp_avg"], state["exp_avg_sq"].sqrt().add_(group["eps"]), value=-lr)
        if decay:
            param.mul_(1 - lr * decay)
