"""Fine-tuning tasks: each says how to read its files, which head to put on the backbone,
how to score predictions and how to write them.

``task.type=NAME`` picks ``TASKS.get(NAME)``, a :class:`Task` subclass; the finetune and
infer stages only talk to this interface, so a new task (NER, reading comprehension,
...) is one module that registers itself here and a ``conf/task/NAME.yaml``.

The contract, in the order the stages use it:

* ``Task(cfg, tokenizer, seq_length, info)`` -- ``cfg`` is the task's schema instance
  (``TASKS.build_config`` of the ``task`` node, or of what a checkpoint stored); ``info``
  holds what fine-tuning learnt (``labels_num``, that inputs are text pairs, NER's tags)
  and is stored in the checkpoint as ``task_info``.
* ``read(path, split=, labels_num=, skip_bad_rows=)`` -> :class:`TaskData`.  ``split`` is
  ``train``/``dev``/``test`` (labelled) or ``infer`` (labels, if any, ignored).  Problems
  are :class:`~uer.errors.UerError` naming ``file:line``.
* ``labels_num_from(train)`` -> the number of outputs when ``task.labels_num`` is unset.
* ``build_model(backbone, labels_num)`` -> a module holding the backbone as ``backbone``
  (a task with ``needs_decoder`` gets the whole encoder-decoder instead)
  (so UER-format key mapping applies) whose ``forward(batch)`` returns
  :class:`~uer.models.ModelOutput` (for the Trainer) and ``predict(batch)`` a tensor.
* ``collate(examples)`` -> a batch dict of tensors (``src``, ``seg``, ...).
* ``length(example)`` -> the width the example needs in a batch; training (with
  length bucketing) and :func:`predict` batch examples of similar length.
* ``evaluate(outputs, data, labels_num)`` -> ``{metric: float}`` with the keys in ``metrics``.
* ``report(outputs, data, labels_num)`` -> the details people read beside the scores (optional):
  ``{"per_class": {name: {precision, recall, f1, support}}}`` and, for classes, ``"confusion"``
  (:func:`uer.tasks.metrics.class_report`); ``{}`` by default.
* ``write_predictions(path, outputs, data, output_logits=, output_prob=)``.

``outputs`` is what :func:`predict` returns: CPU tensors whose rows, concatenated, are the
outputs of ``data.examples`` in order (one row per example).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import MISSING
from torch import nn

from uer.config.fields import setting
from uer.errors import UerError
from uer.models import EMBEDDINGS, build_backbone, build_model
from uer.progress import Progress
from uer.registry import Registry
from uer.runtime import autocast
from uer.training.trainer import to_device

TASKS: Registry = Registry("task", group="task")


@dataclass
class TaskConfig:
    """Keys of every task."""

    type: str = setting(MISSING, "the task (pick with task=)")



@dataclass
class TaskData:
    """The examples of one file, in file order."""

    path: str
    examples: list
    skipped: int = 0
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)


class Task(ABC):
    """The interface every task implements (see the module docstring for the contract)."""

    name = ""
    #: keys of ``evaluate``; the first is what picks the best epoch unless finetune.metric says otherwise
    metrics: tuple[str, ...] = ()
    #: the registered name of the runner that fine-tunes it (:mod:`uer.finetuning.runners`)
    finetune_runner = "single"
    #: whether the model is an encoder-decoder: ``build_model`` then gets the run's whole
    #: :class:`~uer.models.model.Seq2seqModel` (``decoder=`` and ``target=``) instead of the backbone
    needs_decoder = False
    #: whether ``write_predictions`` can add the ``logits``/``prob`` columns (infer.output_logits/output_prob)
    writes_scores = True
    #: the tokenizer roles its inputs are built with beyond the tokenizer's own framing (:mod:`uer.tokenizers.vocab`);
    #: a tokenizer without one is refused when the task is made, before any file is read
    roles: tuple[str, ...] = ()

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        tokenizer.vocab.require(self.roles, f"task={self.name}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.info = dict(info or {})

    @property
    def configured_labels_num(self) -> int | None:
        """``task.labels_num`` where the task lets the user set it; else None (learnt from the data)."""
        return getattr(self.cfg, "labels_num", None)

    @abstractmethod
    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        """See the module docstring."""

    @abstractmethod
    def labels_num_from(self, train: TaskData) -> int:
        """See the module docstring."""

    @abstractmethod
    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        """See the module docstring."""

    @abstractmethod
    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        """See the module docstring."""

    def length(self, example) -> int:
        """Tokens ``collate`` pads ``example`` to at least (its ``src`` length, by default)."""
        return len(example.src)

    @abstractmethod
    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        """See the module docstring."""

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict:
        """See the module docstring."""
        return {}

    @abstractmethod
    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        """See the module docstring."""


def import_tasks() -> None:
    """Every module of this package may register tasks; importing them all means a new task is
    just a new module, with no list to keep in step."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def get_task(name: str) -> type[Task]:
    import_tasks()
    try:
        return TASKS.get(name)
    except KeyError as err:
        raise UerError(f"task.type: {err.args[0]}") from None


def make_task(cfg, tokenizer, seq_length: int, info: dict | None = None) -> Task:
    """The task a ``task`` config (schema instance, node or stored dict) describes."""
    import_tasks()
    cfg = TASKS.build_config(cfg)
    return get_task(cfg.type)(cfg, tokenizer, seq_length, info)


def build_task_model(task: Task, config, labels_num: int | None) -> nn.Module:
    """``task``'s model on a fresh backbone built from ``config``'s ``embedding`` and ``encoder`` nodes (a run's
    config or a checkpoint's); with a ``decoder`` node, on the whole encoder-decoder (its ``target`` too)."""
    vocab = task.tokenizer.vocab
    if config.get("decoder") is not None:
        base = build_model(config["embedding"], config["encoder"], config["target"], len(vocab), tokens=vocab.tokens,
                           decoder_cfg=config["decoder"])
    else:
        base = build_backbone(config["embedding"], config["encoder"], len(vocab), tokens=vocab.tokens)
    return task.build_model(base, labels_num)


def decoder_positions(embedding_cfg) -> int | None:
    """The decoder inputs an encoder-decoder reads: its embedding's positions (None: an embedding without
    positions, whose decoder reads any length with relative positions)."""
    return embedding_cfg.get("max_seq_length") if EMBEDDINGS.lookup(embedding_cfg["type"]).has_positions else None


def predict(model: nn.Module, task: Task, data: TaskData, *, batch_size: int, device: torch.device,
            precision: str, by_length: bool = True) -> list[torch.Tensor]:
    """``model.predict`` over ``data`` without gradients: one CPU tensor whose rows follow ``data.examples``.

    With ``by_length`` the examples are batched longest first (by ``task.length``), so each
    batch holds examples of similar length and is padded little; the rows are put back in
    the input's order afterwards.  ``by_length=False`` batches them in the input's order.
    Outputs that differ in width from batch to batch (per-token ones) are right-padded with
    zeros to the widest.
    """
    examples = data.examples
    order = list(range(len(examples)))
    if by_length:
        order.sort(key=lambda index: -task.length(examples[index]))
    was_training = model.training
    model.eval()
    outputs = []
    progress = Progress(-(-len(order) // batch_size), f"predict {Path(str(data.path)).name}", "batches")
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = to_device(task.collate([examples[i] for i in order[start:start + batch_size]]), device)
                with autocast(device, precision):
                    out = model.predict(batch)
                outputs.append(out.float().cpu())
                progress.update()
    finally:
        progress.close()
        model.train(was_training)
    if not outputs:
        return []
    rows = padded_cat(outputs)
    restored = torch.empty_like(rows)
    restored[torch.tensor(order)] = rows
    return [restored]


def padded_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along the first dimension, the others right-padded with zeros to the largest."""
    shape = [max(sizes) for sizes in zip(*(t.shape[1:] for t in tensors))]
    out = tensors[0].new_zeros((sum(t.size(0) for t in tensors), *shape))
    at = 0
    for t in tensors:
        out[(slice(at, at + t.size(0)), *(slice(0, n) for n in t.shape[1:]))] = t
        at += t.size(0)
    return out
