"""Facts about the current process: run directory, device, precision, seeding."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from uer.errors import UerError


def run_dir(fallback: Path) -> Path:
    """Hydra's output directory for this run (also in workers main.py started); ``fallback``
    when called outside ``main.py`` (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig

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
