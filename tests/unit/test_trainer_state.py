"""Trainer state: the random streams a resumed run continues."""

import torch

from uer.training.optim import build_optimizer, build_scheduler
from uer.training.report import Reporter
from uer.training.trainer import Trainer


def make_trainer(tmp_path):
    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer({"type": "adamw"}, model, 1e-3)
    return Trainer(model, optimizer, build_scheduler({"type": "linear", "warmup": 0.1}, optimizer, 10),
                   device=torch.device("cpu"),
                   precision="fp32", accumulation_steps=1, max_grad_norm=1.0,
                   reporter=Reporter(tmp_path, 10, enabled=False))


def test_state_restores_the_random_stream(tmp_path):
    trainer = make_trainer(tmp_path)
    torch.manual_seed(5)
    state = trainer.state_dict()
    assert len(state["rng_per_rank"]) == 1  # one process: its own generators
    expected = torch.rand(3)
    torch.manual_seed(99)
    trainer.load_state_dict(state)
    assert torch.equal(torch.rand(3), expected)


def test_checkpoint_of_the_older_single_rng_layout_still_resumes(tmp_path):
    trainer = make_trainer(tmp_path)
    torch.manual_seed(5)
    state = trainer.state_dict()
    state["rng"] = state.pop("rng_per_rank")[0]
    expected = torch.rand(3)
    torch.manual_seed(99)
    trainer.load_state_dict(state)
    assert torch.equal(torch.rand(3), expected)
