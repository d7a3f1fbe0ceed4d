"""What the stages share: the checkpoint a training run starts from (checked in the launching process), the
settings that name the files a model is built from."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from uer.config.original_file import adopt_original_file
from uer.config.overrides import adopt_architecture, command_line_overrides
from uer.errors import UerError
from uer.io.formats import ORIGINAL, read_model_file
from uer.io.hf_hub import hub_id
from uer.io.outputs import path_keys
from uer.io.weight_sources import missing_weights


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
    if not Path(path).exists() and hub_id(path) is None:
        raise UerError(missing_weights(path))
    kind, payload = read_model_file(path, "pretrained_model_path")
    if kind == ORIGINAL:
        adopt_original_file(cfg, path, payload, command_line_overrides())
        return None
    stored = payload.get("config") or {}
    absent = [node for node in ("embedding", "encoder") if node not in stored]
    if absent:
        raise UerError(f"checkpoint {path} stores no {absent[0]} config, so its model cannot be rebuilt; "
                       "give a checkpoint written by this project's pretrain or finetune stage")
    stored = dict(stored)
    if stored.get("decoder") is None:  # an encoder-only checkpoint: its target is a pre-training head, not the
        nodes = tuple(node for node in nodes if node not in ("decoder", "target"))  # output layer of a decoder
    if payload.get("tokenizer") is not None:
        stored["tokenizer"] = payload["tokenizer"]["config"]
    adopt_architecture(cfg, stored, nodes, path, command_line_overrides())
    return payload


def model_inputs(cfg: DictConfig) -> list[str]:
    """The settings naming files a composed model is built from: the tokenizer's and the model sizes' files."""
    return path_keys(cfg, "tokenizer") + path_keys(cfg, "model")
