"""Facts about the current process: run directory, device, precision, seeding; the ``hardware`` schema."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig

from uer.config.fields import NON_NEGATIVE, at_least, setting
from uer.errors import UerError

log = logging.getLogger("uer")


@dataclass
class HardwareConfig:
    """``hardware=``: where and how the numbers are crunched; the same run scales by changing it."""

    device: str = setting("cpu", "cpu | cuda | cuda:N | auto (CUDA when visible, else CPU; the choice is logged)")
    precision: str = setting("fp32", "fp32 | bf16 (autocast) | fp16 (CUDA only, with a grad scaler)")
    compile: bool = setting(
        False, "torch.compile the training model (off by default: on CPU its compile time outweighs what it saves in "
               "short runs; docs/scaling.md has the numbers)")
    compile_backend: str = setting(
        "inductor", "torch.compile's backend with hardware.compile=true: inductor (generated kernels) | aot_eager "
                    "(traces forward and backward as inductor does, runs them eagerly: checks that a model compiles, "
                    "in seconds) | another name torch.compiler.list_backends(exclude_tags=()) gives")
    activation_checkpointing: bool = setting(
        False, "recompute each transformer layer (encoder and decoder) in backward: about a third more compute, a "
               "fraction of the activation memory")
    num_threads: int = setting(0, "intra-op CPU threads; 0 = torch's default", bounds=NON_NEGATIVE)
    strategy: str = setting(
        "ddp", "ddp (every rank holds the whole model) | fsdp (parameters, gradients and optimizer state sharded "
               "across the ranks: models past one device's memory; 2 or more processes)")
    nproc_per_node: int = setting(1, "worker processes on each machine (main.py starts them)", bounds=at_least(1))
    nnodes: int = setting(1, "machines of a multi-node run", bounds=at_least(1))
    backend: Optional[str] = setting(None, "gloo | nccl; null = nccl on CUDA, gloo on CPU")
    rdzv_endpoint: str = setting("127.0.0.1:0", "host:port of the rendezvous; port 0 = pick a free one (one node)")
    rdzv_id: str = setting("uer", "the same on every node of one run")
    rdzv_timeout: int = setting(300, "seconds to wait for all nodes to join", bounds=at_least(1))
    max_restarts: int = setting(0, "restart failed workers this many times; they resume from the last checkpoint",
                                bounds=NON_NEGATIVE)
    timeout: int = setting(1800, "seconds a collective may wait before the run is declared hung", bounds=at_least(1))


def run_dir(fallback: Path) -> Path:
    """Hydra's output directory for this run (also in workers main.py started); ``fallback``
    when called outside ``main.py`` (tests, notebooks)."""
    if os.environ.get("UER_RUN_DIR"):
        return Path(os.environ["UER_RUN_DIR"])
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(fallback)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``hardware.device`` as a torch device (``auto``: CUDA when visible, else CPU), refusing CUDA where none is."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("hardware.device=auto: %s", "CUDA is visible, using cuda" if name == "cuda" else
                 "no CUDA device is visible (torch.cuda.is_available() is false), using cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UerError(f"hardware.device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UerError(f"hardware.device={name} but no CUDA device is visible; use hardware=cpu")
    return device


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """A context that runs the forward pass at ``precision`` (fp32 = no autocast)."""
    if precision not in PRECISIONS:
        raise UerError(f"hardware.precision={precision} is not known; choose one of: fp32, bf16, fp16")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise UerError("hardware.precision=fp16 needs a CUDA device; use hardware.precision=bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_threads(num_threads: int) -> None:
    if num_threads > 0:
        torch.set_num_threads(num_threads)
