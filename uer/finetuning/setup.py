"""What every fine-tuning run starts from, once the options are checked: :class:`Setup`.

The backbone starts from one of three places:

* this project's checkpoint (``pretrained_model_path=....pt``): the stage has already put its
  architecture and tokenizer into the run's config (:func:`uer.stages.common.starting_checkpoint`),
  and its weights are loaded here;
* an original UER model file: the composed ``embedding``/``encoder``/``size`` describe it, with the
  original's LayerNorm (:mod:`uer.config.original_file`);
* nothing (``pretrained_model_path=null``): random initialisation from the composed config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from uer.distributed import DistEnv
from uer.errors import UerError
from uer.io.checkpoint import checkpoint_tokenizer
from uer.io.formats import CHECKPOINT, read_model_file
from uer.io.uer_format import from_uer_state_dict, load_into_model
from uer.tasks import Task, build_task_model, decoder_positions, make_task
from uer.tokenizers import build_tokenizer
from uer.training.process import run_config, training_process

log = logging.getLogger("uer.finetune")


@dataclass
class Setup:
    """What every fine-tuning run starts from, once the options are checked."""

    cfg: DictConfig
    device: torch.device
    tokenizer: object
    state: dict | None  # starting weights in our names (None: random initialisation)
    source: str | None  # where ``state`` came from, for messages
    task: Task
    env: DistEnv = DistEnv()  # this process's rank in a multi-process run
    hf: dict | None = None  # the Hugging Face model the starting checkpoint came from (its config["hf"])


def prepare(cfg: DictConfig) -> Setup:
    """Set threads/device/seed, load the starting weights, make the task."""
    device, env = training_process(cfg)

    tokenizer, state, source, hf = starting_point(cfg)
    return Setup(cfg, device, tokenizer, state, source, run_task(cfg, tokenizer), env, hf)


def run_task(cfg: DictConfig, tokenizer) -> Task:
    """The run's task on ``tokenizer``, once ``finetune.seq_length`` is checked against the embedding's positions
    (and ``finetune.metric`` against what the task reports).  The stage makes it before any worker starts too
    (:func:`uer.stages.finetune.prepare`), so that what the task refuses (a vocabulary without a token it needs,
    a setting) stops the run there."""
    seq_length, positions = cfg.finetune.seq_length, cfg.embedding.get("max_seq_length")
    if positions is not None and seq_length > positions:
        raise UerError(f"finetune.seq_length={seq_length} exceeds the {positions} positions the embedding has; "
                       f"use finetune.seq_length={positions} or less")
    task = make_task(cfg.task, tokenizer, seq_length)
    selection_metric(cfg, task)
    if cfg.get("decoder") is not None:  # an encoder-decoder: what its targets start with and may take
        if cfg.decoder.start_id is None:
            # recorded in the checkpoint's config
            cfg.decoder.start_id = tokenizer.vocab.role_id("cls", "the decoder's first input (decoder.start_id unset)")
        task.info.update(decoder_start_id=cfg.decoder.start_id, target_positions=decoder_positions(cfg.embedding))
    return task


def selection_metric(cfg: DictConfig, task: Task) -> str:
    """``finetune.metric`` (or the task's first metric), checked against what the task reports."""
    metric = cfg.finetune.metric or task.metrics[0]
    if metric not in task.metrics:
        raise UerError(f"finetune.metric={metric} is not reported by task {task.name}; "
                       f"choose one of: {', '.join(task.metrics)}")
    return metric


def new_model(setup: Setup, labels_num: int | None) -> nn.Module:
    """The task's model on a fresh backbone (or encoder-decoder: :func:`build_task_model`), holding the starting
    weights, on the device."""
    model = build_task_model(setup.task, setup.cfg, labels_num)
    if setup.state is not None:
        load_into_model(model, usable_weights(setup.state, model), source=setup.source)
    return model.to(setup.device)


def checkpoint_config(setup: Setup, **extra) -> dict:
    """The config a fine-tuned checkpoint records: the run's, with what it learnt (``task.labels_num``), and
    the Hugging Face model it started from (``hf``), so ``tool=convert`` writes it back as that family."""
    config = run_config(setup.cfg)
    if "labels_num" in config["task"] and setup.task.info.get("labels_num") is not None:
        config["task"]["labels_num"] = setup.task.info["labels_num"]
    if setup.hf is not None:
        config["hf"] = setup.hf
    return {**config, **extra}


def starting_point(cfg: DictConfig):
    """``(tokenizer, state dict in our names or None, source, the Hugging Face model it came from or None)`` of
    the backbone to fine-tune."""
    path = cfg.pretrained_model_path
    if not path:
        log.info("pretrained_model_path is null: the model starts from random weights")
        return starting_tokenizer(cfg, None), None, None, None
    kind, content = read_model_file(path, "pretrained_model_path")
    if kind != CHECKPOINT:
        log.info("starting from the original UER model %s with the composed embedding/encoder/size config", path)
        return starting_tokenizer(cfg, None), from_uer_state_dict(content), str(path), None
    log.info("starting from %s, with its architecture and tokenizer", path)
    return (starting_tokenizer(cfg, content), content["model"], str(path), (content.get("config") or {}).get("hf"))


def starting_tokenizer(cfg: DictConfig, checkpoint: dict | None):
    """The tokenizer of a run starting from ``checkpoint`` (one of ours, at ``pretrained_model_path``): the one it
    was trained with; without one (random weights, an original UER file), the configured one."""
    if checkpoint is not None:
        return checkpoint_tokenizer(checkpoint, cfg.pretrained_model_path)
    return build_tokenizer(cfg.tokenizer)


def usable_weights(state: dict, model: torch.nn.Module) -> dict:
    """The starting weights less head weights whose shapes do not fit this task's head (a head for another
    labels_num starts afresh).  The rest goes to :func:`load_into_model`, which lists what it does not use
    (a pre-training target) and what it initialises (a new head)."""
    expected = model.state_dict()
    keep, dropped = {}, []
    for key, tensor in state.items():
        if key in expected and not key.startswith("backbone.") and expected[key].shape != tensor.shape:
            dropped.append(key)
        else:
            keep[key] = tensor
    if dropped:
        log.warning("not loading %s: shapes differ from this task's head, which starts from random weights",
                    ", ".join(dropped))
    return keep
