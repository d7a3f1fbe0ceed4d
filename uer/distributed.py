"""This process's place in a multi-process run, and the few collective operations we need.

A worker learns its rank from the environment torchrun (or our own launcher, see
:mod:`uer.launch`) sets: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``.  Without them the
run is a single process and every function here is a no-op.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from uer.errors import UerError

log = logging.getLogger("uer.distributed")

DISTRIBUTED_STAGES = ("pretrain", "finetune")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def world_size(cfg) -> int:
    """The processes run ``cfg`` asks for (1 for a stage that runs in one process)."""
    hardware = cfg.get("hardware") if cfg.stage in DISTRIBUTED_STAGES else None
    return hardware.nproc_per_node * hardware.nnodes if hardware is not None else 1


def starts_workers(cfg) -> bool:
    """Whether this process starts the workers of ``cfg``'s run (:mod:`uer.launch`): several processes asked for,
    and this process is not one of them already (torchrun, a restart or SLURM sets ``RANK``)."""
    return world_size(cfg) > 1 and "RANK" not in os.environ


def env_from_os() -> DistEnv:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistEnv()
    return DistEnv(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))


def restarted() -> bool:
    """True in a worker the elastic agent (:mod:`uer.launch`) restarted after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0


def adopt_slurm_tasks() -> None:
    """Under SLURM with one task per worker (``hardware=slurm``: srun through Hydra's submitit
    launcher) export torch.distributed's variables from SLURM's, so each task joins as a rank
    instead of starting workers of its own."""
    if "RANK" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment  # lazy: optional (the slurm extra)
    except ImportError:
        raise UerError("running as one of several SLURM tasks needs submitit: pip install -e \".[slurm]\"") from None
    TorchDistributedEnvironment().export()


def default_backend(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def init(hardware, device: torch.device) -> DistEnv:
    """Join the process group when started as one of several workers; returns where we are."""
    env = env_from_os()
    if env.active and not dist.is_initialized():
        backend = hardware.backend or default_backend(device.type)
        if backend == "nccl" and device.type != "cuda":
            raise UerError("hardware.backend=nccl needs hardware.device=cuda; use gloo on CPU")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=hardware.timeout))
        log.info("rank %d of %d joined (%s)", env.rank, env.world_size, backend)
    return env


def worker_device(device: torch.device, env: DistEnv) -> torch.device:
    """Each worker on a CUDA machine takes the GPU of its local rank among those it sees (:func:`local_gpu`)."""
    if device.type == "cuda" and env.active and device.index is None:
        index = local_gpu(env.local_rank, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def local_gpu(local_rank: int, visible: int) -> int:
    """The GPU ordinal of the worker with ``local_rank`` when it sees ``visible`` GPUs.

    A worker that sees one GPU takes it: under SLURM, submitit narrows ``CUDA_VISIBLE_DEVICES``
    to the task's own GPU, whose ordinal is then 0 whatever the local rank (ordinal
    ``local_rank`` exists there only if CUDA was initialised before the narrowing)."""
    if visible == 1:
        return 0
    if local_rank < visible:
        return local_rank
    raise UerError(f"the worker of local rank {local_rank} has no GPU of its own: it sees {visible}; "
                   f"start at most {visible} processes per node (hardware.nproc_per_node)")


def wrap(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    if not env.active:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj) -> list:
    """``obj`` from every rank, in rank order; ``[obj]`` without a process group.  Every rank must call it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank; ``obj`` itself without a process group.  Every rank must call it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def current_rank_and_size() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group.  Callers drop their DDP model first: destroying the group
    while a DDP module is alive can abort a gloo worker at exit.

    Called (from a ``finally``) while an error is leaving this rank, it leaves the group as it is: closing its
    connections would fail the other ranks' pending all-reduce with an error of their own, printed beside this
    rank's; this rank exits non-zero instead, and the launcher's agent stops the others."""
    if dist.is_initialized() and sys.exc_info()[1] is None:
        gc.collect()
        dist.destroy_process_group()
