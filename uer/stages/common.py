"""Pieces the training stages share: the run's config as recorded, starting from a checkpoint,
the model as the Trainer runs it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from uer import distributed, malloc_tuning
from uer.config.original_file import adopt_original_file
from uer.config.overrides import adopt_architecture, command_line_overrides
from uer.errors import UerError
from uer.io.formats import ORIGINAL, read_model_file
from uer.io.weight_sources import missing_weights
from uer.runtime import configure_threads, resolve_device, seed_everything

log = logging.getLogger("uer")


def run_config(cfg: DictConfig) -> dict:
    """The run's whole config, resolved, as plain values: what its checkpoints record."""
    return OmegaConf.to_container(cfg, resolve=True)


def starting_checkpoint(cfg: DictConfig, nodes: tuple[str, ...]) -> dict | None:
    """The checkpoint ``pretrained_model_path`` names when it is one of ours (else None), after its
    architecture (``nodes``) has replaced the composed one in ``cfg``.  An original UER file sets
    the LayerNorm formula and weight tying instead (:mod:`uer.config.original_file`).

    Runs in the launching process, so a conflicting override stops the run before any worker
    starts; workers receive the adopted config.
    """
    path = cfg.get("pretrained_model_path")
    if not path:
        return None
    if not Path(path).exists():
        raise UerError(missing_weights(path))
    kind, payload = read_model_file(path)
    if kind == ORIGINAL:
        adopt_original_file(cfg, path, payload, command_line_overrides())
        return None
    stored = payload.get("config") or {}
    absent = [node for node in ("embedding", "encoder") if node not in stored]
    if absent:
        raise UerError(f"checkpoint {path} stores no {absent[0]} config, so its model cannot be rebuilt; "
                       "give a checkpoint written by this project's pretrain or finetune stage")
    stored = dict(stored)
    if payload.get("tokenizer") is not None:
        stored["tokenizer"] = payload["tokenizer"]["config"]
    adopt_architecture(cfg, stored, nodes, path, command_line_overrides())
    return payload


def training_process(cfg: DictConfig):
    """``(device, distributed env)`` of this process of a training run: threads, device, process group, seed."""
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)
    env = distributed.init(cfg.hardware, device)
    seed_everything(cfg.seed)
    return distributed.worker_device(device, env), env


def training_model(model, hardware: DictConfig, env, device):
    """``model`` as the Trainer runs it: activation checkpointing, DDP across ranks, ``torch.compile``."""
    if hardware.activation_checkpointing:
        encoder = model.backbone.encoder
        if not hasattr(encoder, "enable_activation_checkpointing"):
            raise UerError(f"hardware.activation_checkpointing=true supports the transformer encoders (bert, gpt, "
                           f"albert), not {type(encoder).__name__}; set it to false")
        encoder.enable_activation_checkpointing()
    if device.type == "cpu":
        log.info("memory: %s", malloc_tuning.describe())
    train_model = distributed.wrap(model, env, device)
    return torch.compile(train_model) if hardware.compile else train_model
