"""Pieces every stage needs: the tokenizer from config, the model config a checkpoint records,
the model as the Trainer runs it."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from uer import distributed, malloc_tuning
from uer.errors import UerError
from uer.tokenizers import build_tokenizer

# The config nodes that determine a model's architecture and input ids; a checkpoint
# stores them resolved, so later stages can rebuild the model from the checkpoint alone.
MODEL_NODES = ("model", "tokenizer", "embedding", "encoder", "target")

log = logging.getLogger("uer")


def tokenizer_from_config(cfg: DictConfig):
    t = cfg.tokenizer
    return build_tokenizer(type=t.type, vocab_path=t.vocab_path, spm_model_path=t.spm_model_path,
                           do_lower_case=t.do_lower_case)


def model_config(cfg: DictConfig) -> dict:
    return {node: OmegaConf.to_container(cfg[node], resolve=True) for node in MODEL_NODES}


def checkpoint_tokenizer(cfg: DictConfig, payload: dict, path):
    """The tokenizer a checkpoint was trained with (its stored settings); else the composed one,
    if it gives the same ids; else a UerError naming both vocabularies."""
    stored = (payload.get("config") or {}).get("tokenizer") or {}
    try:
        tokenizer = build_tokenizer(**stored)
        if tokenizer.identity() == payload.get("vocab"):
            return tokenizer
    except (UerError, TypeError):
        pass
    tokenizer = tokenizer_from_config(cfg)
    check_vocabulary(payload.get("vocab"), stored, tokenizer, path)
    return tokenizer


def check_vocabulary(stored_identity, stored_tokenizer, tokenizer, path) -> None:
    """A UerError naming both vocabularies unless ``tokenizer`` gives the ids the checkpoint was trained with."""
    current = tokenizer.identity()
    if stored_identity == current:
        return
    stored_identity = stored_identity or {}
    keys = sorted(k for k in set(stored_identity) | set(current) if stored_identity.get(k) != current.get(k))
    stored_tokenizer = stored_tokenizer or {}
    fix = "set tokenizer.* to the checkpoint's"
    if stored_tokenizer.get("vocab_path") or stored_tokenizer.get("spm_model_path"):
        option = "spm_model_path" if stored_tokenizer.get("spm_model_path") else "vocab_path"
        fix = (f"pass tokenizer.type={stored_tokenizer.get('type')} "
               f"tokenizer.{option}={stored_tokenizer[option]}")
        if str(stored_tokenizer[option]) == str(tokenizer.vocab.path):
            fix = (f"{stored_tokenizer[option]} changed since the checkpoint was written; restore that file "
                   "or start from a checkpoint trained with the current one")
    raise UerError(
        f"checkpoint {path} was trained with vocabulary {describe_identity(stored_identity, keys)} "
        f"({describe_tokenizer(stored_tokenizer)}) but the current tokenizer is {describe_identity(current, keys)} "
        f"({describe_tokenizer(None, tokenizer)}); {fix}"
    )


def describe_identity(identity: dict, keys: list[str]) -> str:
    return "(" + ", ".join(f"{key}={str(identity.get(key))[:12]}" for key in keys or sorted(identity)) + ")"


def describe_tokenizer(stored: dict | None, tokenizer=None) -> str:
    if tokenizer is not None:
        return f"from {tokenizer.vocab.path}"
    path = (stored or {}).get("spm_model_path") or (stored or {}).get("vocab_path")
    return f"from {path}" if path else "vocabulary file unknown"



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
