"""Decisions every rank must take alike, in two gloo processes: early stopping follows rank 0's dev scores
even when another rank's scores differ (as two GPUs' kernels may round differently); after a restart every
rank resumes from the checkpoint rank 0 resumes from, even where its node's directory holds another."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from uer.finetuning.evaluation import Best, DevEvaluations, EvaluationSchedule
from uer.io.checkpoint import FORMAT, VERSION, atomic_torch_save, sealed
from uer.stages.pretrain import _resume_payload

pytestmark = pytest.mark.e2e

# rank 0 improves at every evaluation; rank 1's own scores would stop it (patience 1) at the second one
SCORES = {0: [0.1, 0.2, 0.3, 0.4], 1: [0.5, 0.4, 0.3, 0.2]}


class NoTrainer:
    def check_finite(self):
        pass


def stops_of_rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        scores = iter(SCORES[rank])
        schedule = EvaluationSchedule(1, SimpleNamespace(max_steps=4, epochs_num=1, eval_every_steps=None))
        evaluations = DevEvaluations(NoTrainer(), lambda: {"acc": next(scores)}, schedule, Best(Path(out) / "best.pt"),
                                     metric="acc", patience=1, history=[], record_extra={}, policies=[])
        stops = [evaluations(step) for step in range(1, 5)]
        Path(out, f"rank{rank}").write_text(" ".join(map(str, stops)) + f" {evaluations.best.step}")
    finally:
        dist.destroy_process_group()


def test_early_stopping_is_rank_0_s_decision_on_every_rank(tmp_path):
    mp.spawn(stops_of_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "False False False False 4"


def resumed_step_of_rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        payload, _ = _resume_payload(SimpleNamespace(resume=True), Path(out) / f"node{rank}")
        Path(out, f"rank{rank}").write_text(str(payload["trainer"]["step"]))
    finally:
        dist.destroy_process_group()


def test_every_rank_resumes_from_rank_0_s_checkpoint(tmp_path):
    """Node 1's directory lags behind node 0's (rank 0 writes the checkpoints): both ranks continue at step 4."""
    for node, steps in (("node0", (2, 4)), ("node1", (2,))):
        (tmp_path / node).mkdir()
        for step in steps:
            atomic_torch_save(sealed({"format": FORMAT, "version": VERSION, "model": {"w": torch.zeros(1)},
                                      "trainer": {"step": step}}), tmp_path / node / f"step_{step}.pt")
    mp.spawn(resumed_step_of_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "4"
