"""optimizer= and lr_scheduler= groups: LAMB against steps worked out by hand, each schedule's multipliers,
and the original toolkit's --beta1/--beta2/--warmup as keys of the groups."""

import copy
import math

import pytest
import torch

from uer.training.adamw_uncorrected import UncorrectedAdamW
from uer.training.lamb import Lamb
from uer.training.optim import build_optimizer, build_scheduler
from uer_testing import compose_config


def lamb_by_hand(w, grads, lr, beta1, beta2, eps, wd):
    """LAMB's updates of one tensor (a list of floats), written out with plain floats."""
    m, v = [0.0] * len(w), [0.0] * len(w)
    for t, g in enumerate(grads, start=1):
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g)]
        r = [(mi / (1 - beta1 ** t)) / (math.sqrt(vi / (1 - beta2 ** t)) + eps) + wd * wi
             for mi, vi, wi in zip(m, v, w)]
        w_norm, r_norm = math.sqrt(sum(x * x for x in w)), math.sqrt(sum(x * x for x in r))
        trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
        w = [wi - lr * trust * ri for wi, ri in zip(w, r)]
    return w


@pytest.mark.parametrize("start, wd", [([3.0, -4.0, 0.5], 0.1), ([0.0, 0.0, 0.0], 0.0)])
def test_lamb_takes_the_steps_worked_out_by_hand(start, wd):
    grads = [[1.0, 2.0, -0.5], [0.5, -1.0, 0.25], [-2.0, 0.1, 1.0]]
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = Lamb([param], lr=0.1, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd)
    for grad in grads:
        param.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
    expected = lamb_by_hand(start, grads, 0.1, 0.9, 0.99, 1e-6, wd)
    assert param.detach().tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # A zero tensor has no norm to scale by: the trust ratio is 1, so it moves by lr * r (about lr per entry).
    if not any(start):
        assert all(abs(x) > 0.05 for x in param.detach().tolist())


def test_lamb_option_decays_matrices_not_biases_and_resumes_from_its_state():
    cfg = compose_config(["optimizer=lamb", "optimizer.beta1=0.8", "optimizer.beta2=0.95"])
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(cfg.optimizer, model, 0.01)
    assert isinstance(optimizer, Lamb)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.defaults["betas"] == (0.8, 0.95)
    x = torch.randn(4, 3)
    for _ in range(2):
        model(x).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    resumed = build_optimizer(cfg.optimizer, twin, 0.01)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as a checkpoint round trip gives
    for net, opt in ((model, optimizer), (twin, resumed)):
        net(x).sum().backward()
        opt.step()
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)


def multipliers(option: str, total: int, warmup: float) -> list[float]:
    """The learning-rate multiplier of each of the ``total`` updates under ``lr_scheduler=option``."""
    cfg = compose_config([f"lr_scheduler={option}", f"lr_scheduler.warmup={warmup}"])
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(cfg.lr_scheduler, optimizer, total)
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_each_schedule_warms_up_then_follows_its_curve():
    warm = [0.5, 1.0]  # 20% of 10 updates: 2 of warm-up, the second at the peak
    assert multipliers("linear", 10, 0.2) == pytest.approx(warm + [(10 - t + 1) / 8 for t in range(3, 11)])
    assert multipliers("cosine", 10, 0.2) == pytest.approx(
        warm + [0.5 * (1 + math.cos(math.pi * (t - 3) / 8)) for t in range(3, 11)])
    assert multipliers("constant", 10, 0.2) == pytest.approx(warm + [1.0] * 8)
    assert multipliers("inverse_sqrt", 10, 0.2) == pytest.approx(warm + [math.sqrt(2 / t) for t in range(3, 11)])
    # No warm-up: the peak from the first update (inverse_sqrt: 1/sqrt(t)).
    assert multipliers("constant", 4, 0.0) == pytest.approx([1.0] * 4)
    assert multipliers("inverse_sqrt", 4, 0.0) == pytest.approx([1 / math.sqrt(t) for t in range(1, 5)])
    assert multipliers("cosine", 4, 0.0)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("optimizer", ["adamw", "lamb"])
def test_the_original_beta_and_warmup_flags_are_keys_of_the_groups(optimizer):
    """--beta1 0.8 --beta2 0.98 --warmup 0.05 of the original toolkit, as this project's overrides."""
    for schedule in ("linear", "cosine", "constant", "inverse_sqrt"):
        cfg = compose_config([f"optimizer={optimizer}", f"lr_scheduler={schedule}", "optimizer.beta1=0.8",
                              "optimizer.beta2=0.98", "lr_scheduler.warmup=0.05"])
        built = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2), 1e-3)
        assert built.defaults["betas"] == (0.8, 0.98)
        assert cfg.lr_scheduler.warmup == 0.05


def one_uncorrected_step(grad, weight_decay=0.0, lr=0.1):
    param = torch.nn.Parameter(torch.ones_like(grad))
    optimizer = UncorrectedAdamW([param], lr=lr, eps=1e-6, weight_decay=weight_decay)
    param.grad = grad.clone()
    optimizer.step()
    return param.detach()


def test_uncorrected_adamw_first_step_is_the_raw_moment_ratio_then_decoupled_decay():
    grad = torch.tensor([0.5, -2.0, 1e-3])
    lr, decay = 0.1, 0.2
    step = lr * (0.1 * grad) / ((1e-3 * grad * grad).sqrt() + 1e-6)
    torch.testing.assert_close(one_uncorrected_step(grad, decay, lr), (1 - step) * (1 - lr * decay))


def test_uncorrected_first_step_is_sqrt_1000_over_10_times_adams():
    grad = torch.tensor([0.5, -2.0])
    param = torch.nn.Parameter(torch.ones_like(grad))
    adam = torch.optim.AdamW([param], lr=0.1, eps=1e-6, weight_decay=0.0)
    param.grad = grad.clone()
    adam.step()
    ratio = (1 - one_uncorrected_step(grad)) / (1 - param.detach())
    torch.testing.assert_close(ratio, torch.full_like(grad, math.sqrt(1000) / 10), rtol=1e-4, atol=0)


def test_uncorrected_moments_accumulate_without_correction():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = UncorrectedAdamW([param], lr=1.0, eps=0.0)
    for _ in range(2):
        param.grad = torch.ones(1)
        optimizer.step()
    # after step 1: m = 0.1, v = 0.001; after step 2: m = 0.19, v = 0.001999
    assert param.item() == pytest.approx(-(0.1 / math.sqrt(0.001) + 0.19 / math.sqrt(0.001 * 0.999 + 0.001)),
                                         rel=1e-6)


def test_bias_correction_false_builds_the_uncorrected_optimizer_which_resumes_identically():
    cfg = compose_config(["stage=pretrain", "optimizer.bias_correction=false"]).optimizer
    torch.manual_seed(0)
    model, twin = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    first = build_optimizer(cfg, model, 1e-2)
    assert type(first) is UncorrectedAdamW
    assert [g["weight_decay"] for g in first.param_groups] == [0.01, 0.0]  # matrices only
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        first.step()
        first.zero_grad()
    twin.load_state_dict(model.state_dict())
    second = build_optimizer(cfg, twin, 1e-2)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as a checkpoint file would
    batch = torch.randn(4, 3)
    for net, optimizer in ((model, first), (twin, second)):
        net(batch).sum().backward()
        optimizer.step()
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)
    assert type(build_optimizer(compose_config(["stage=pretrain"]).optimizer, model, 1e-2)) is torch.optim.AdamW
