"""Where each worker's tensors and random streams go on a CUDA machine, checked on any machine: the decisions
are plain functions of what CUDA reports, and torch.cuda's calls are recorded instead of made."""

import logging
import os
from types import SimpleNamespace

import pytest
import torch

from uer.distributed import DistEnv, local_gpu, worker_device
from uer.errors import UerError
from uer.launch import check_devices, share_cores
from uer.training.trainer import restore_cuda_rng, to_device
from uer_testing import compose_config


def test_a_worker_seeing_one_gpu_takes_it_whatever_its_local_rank():
    """SLURM tasks: submitit leaves each task its own GPU, ordinal 0."""
    assert [local_gpu(rank, 1) for rank in range(4)] == [0, 0, 0, 0]
    assert [local_gpu(rank, 4) for rank in range(4)] == [0, 1, 2, 3]
    with pytest.raises(UerError, match="local rank 2 has no GPU of its own: it sees 2; start at most 2 processes"):
        local_gpu(2, 2)


@pytest.fixture
def cuda_calls(monkeypatch):
    """torch.cuda as a machine with ``visible[0]`` GPUs would answer; the calls made are recorded."""
    calls, visible = [], [1]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible[0])
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("rng", int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return calls, visible


def test_worker_device_is_the_local_gpu_among_those_visible(cuda_calls):
    calls, visible = cuda_calls
    assert worker_device(torch.device("cuda"), DistEnv(rank=5, local_rank=1, world_size=8)) == torch.device("cuda", 0)
    visible[0] = 4
    assert worker_device(torch.device("cuda"), DistEnv(rank=5, local_rank=1, world_size=8)) == torch.device("cuda", 1)
    assert calls == [("set_device", 0), ("set_device", 1)]
    assert worker_device(torch.device("cpu"), DistEnv(rank=1, local_rank=1, world_size=2)) == torch.device("cpu")


def test_one_gpu_for_several_workers_is_refused_before_any_worker_starts():
    cfg = compose_config(["hardware=8gpu", "hardware.device=cuda:1"])
    with pytest.raises(UerError, match="hardware.device=cuda:1 with hardware.nproc_per_node=8 would put every worker "
                                       "on one GPU; use hardware.device=cuda"):
        check_devices(cfg)


def states(*firsts):
    return [torch.tensor([first, 7], dtype=torch.uint8) for first in firsts]


def test_the_cuda_generator_resumes_on_this_rank_s_gpu_from_its_own_or_an_older_checkpoint_s_state(cuda_calls, caplog):
    calls, _ = cuda_calls
    gpu1 = torch.device("cuda", 1)
    restore_cuda_rng(states(9)[0], gpu1)  # this checkpoint's layout: the saving device's state alone
    restore_cuda_rng(states(3, 4), gpu1)  # older: every visible device's; ordinal 1 exists
    restore_cuda_rng(states(3), gpu1)  # ... written with one GPU visible: its state, not an index error
    restore_cuda_rng(states(5, 6), torch.device("cuda"))  # the current device (0)
    assert calls == [("rng", 9, gpu1), ("rng", 4, gpu1), ("rng", 3, gpu1), ("rng", 5, torch.device("cuda"))]
    restore_cuda_rng(states(1)[0], torch.device("cpu"))
    assert len(calls) == 4
    with caplog.at_level(logging.WARNING, logger="uer.train"):
        restore_cuda_rng(None, gpu1)
    assert len(calls) == 4 and "holds no CUDA generator state (written on CPU)" in caplog.text


def test_workers_share_the_node_s_cores_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # recorded, so the environment is restored afterwards
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    share_cores(SimpleNamespace(num_threads=0, nproc_per_node=4))
    assert os.environ["OMP_NUM_THREADS"] == "4"
    share_cores(SimpleNamespace(num_threads=0, nproc_per_node=32))  # what the user or a first call set stays
    assert os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.delenv("OMP_NUM_THREADS")
    share_cores(SimpleNamespace(num_threads=0, nproc_per_node=32))
    assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    for chosen in (SimpleNamespace(num_threads=2, nproc_per_node=4), SimpleNamespace(num_threads=0, nproc_per_node=1)):
        share_cores(chosen)
        assert "OMP_NUM_THREADS" not in os.environ


def test_a_batch_bound_for_a_gpu_is_pinned_once_then_copied_without_blocking(monkeypatch):
    """Fine-tuning collates batches in the loop; from pageable memory their copy would block the host."""
    pinned, moved = [], []
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: getattr(self, "was_pinned", False))
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(tuple(self.shape)) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device, non_blocking=False: moved.append(
        (device, non_blocking)) or self)
    already = torch.zeros(1)
    already.was_pinned = True  # as pre-training's prefetcher hands it over
    gpu = torch.device("cuda", 0)
    to_device({"src": torch.zeros(2, 3), "label": torch.zeros(2), "seg": already}, gpu)
    assert pinned == [(2, 3), (2,)]
    assert moved == [(gpu, True)] * 3
    pinned.clear()
    to_device({"src": torch.zeros(2, 3)}, torch.device("cpu"))
    assert pinned == []
