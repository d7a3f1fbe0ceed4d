"""One process of a training run: its threads, device, process group and seed; the config its
checkpoints record; the model as the Trainer runs it."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from uer import distributed, malloc_tuning
from uer.errors import UerError
from uer.runtime import configure_threads, resolve_device, seed_everything
from uer.training.fsdp import is_sharded

log = logging.getLogger("uer")


def run_config(cfg: DictConfig) -> dict:
    """The run's whole config, resolved, as plain values: what its checkpoints record."""
    return OmegaConf.to_container(cfg, resolve=True)


def training_process(cfg: DictConfig):
    """``(device, distributed env)`` of this process of a training run: threads, device, process group, seed."""
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)
    env = distributed.init(cfg.hardware, device)
    seed_everything(cfg.seed)
    return distributed.worker_device(device, env), env


def training_model(model, hardware: DictConfig, env, device):
    """``model`` as the Trainer runs it: activation checkpointing, DDP across ranks (an FSDP-sharded model is
    its own wrapper), ``torch.compile``."""
    if hardware.activation_checkpointing:
        encoder = model.backbone.encoder
        if not hasattr(encoder, "enable_activation_checkpointing"):
            raise UerError(f"hardware.activation_checkpointing=true supports the transformer encoders (bert, gpt, "
                           f"albert), not {type(encoder).__name__}; set it to false")
        encoder.enable_activation_checkpointing()
        decoder = getattr(model, "decoder", None)  # an encoder-decoder's: always a transformer
        if decoder is not None:
            decoder.enable_activation_checkpointing()
    if device.type == "cpu":
        log.info("memory: %s", malloc_tuning.describe())
    train_model = model if is_sharded(model) else distributed.wrap(model, env, device)
    return compiled(train_model, hardware.compile_backend) if hardware.compile else train_model


def compiled(model, backend: str = "inductor"):
    """``model`` under ``torch.compile`` as ``hardware.compile=true`` runs it (the benches compile their
    transformers peers the same way).  Shapes are left to torch's automatic dynamic shapes: the first batch
    compiles a graph for its shape, the first batch of another length one graph with that length (and
    the batch size, when it changes) symbolic, which every later length reuses."""
    return torch.compile(model, backend=backend)


def check_compile(cfg: DictConfig) -> None:
    """Before any worker starts: ``hardware.compile_backend`` names a backend torch has."""
    hardware = cfg.get("hardware")
    if hardware is None or not hardware.get("compile"):
        return
    backends = torch.compiler.list_backends(exclude_tags=())
    if hardware.compile_backend not in backends:
        raise UerError(f"hardware.compile_backend={hardware.compile_backend} is not a torch.compile backend; "
                       f"choose inductor or aot_eager (torch has: {', '.join(backends)})")
