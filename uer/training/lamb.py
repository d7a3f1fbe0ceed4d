"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes").

Each tensor takes Adam's bias-corrected step direction plus decoupled weight decay,
``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * w``, scaled by its trust ratio
``||w|| / ||r||`` (1 where either norm is 0), so every layer moves by about the same
fraction of its own size whatever its gradients' scale: what lets BERT pre-train with
very large batches.
"""

from __future__ import annotations

import torch

from uer.training.adam_moments import AdamMoments


class Lamb(AdamMoments):
    def update(self, param: torch.Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        step = state["step"]
        denominator = (state["exp_avg_sq"] / (1 - beta2 ** step)).sqrt_().add_(group["eps"])
        update = (state["exp_avg"] / (1 - beta1 ** step)).div_(denominator)
        if group["weight_decay"]:
            update.add_(param, alpha=group["weight_decay"])
        weight_norm, update_norm = param.norm(), update.norm()
        # Without a host sync: a tensor trust ratio, 1 where a norm is 0.
        trust = torch.where((weight_norm > 0) & (update_norm > 0), weight_norm / update_norm,
                            torch.ones_like(weight_norm))
        param.sub_(update.mul_(trust * group["lr"]))
