"""Multi-label classification: each text (pair) holds a set of labels, possibly empty (the original
toolkit's ``run_classifier_multi_label.py``).

Files: TSV with a header row naming ``label`` and ``text_a`` (and ``text_b`` for pairs), in any
order, as for ``task=classifier``; the ``label`` field holds the row's class ids separated by
commas (``0,2``; an empty field: no label applies)::

    label	text_a
    0,2	这本书的故事和插图都很好
    1	物流太慢
    	一般

Labels: ``task.labels=[0,1,2]`` declares the class ids (a row holding another is refused, naming
its file and line); ``task.labels_num=N`` declares ids 0..N-1; with neither, the labels are
0..max of the training file's ids, reported and checked for stray rows as the classifier's are.

Inputs and pooled head are the classifier's, with one logit per label trained by binary
cross-entropy (a sigmoid per label, not a softmax over labels).  A label is predicted when its
probability is at least ``task.threshold``.  Dev/test report ``micro_f1``, ``macro_f1``
(:mod:`uer.tasks.metrics`: a label neither gold nor predicted on any row is left out of the
macro mean) and ``acc`` (rows whose predicted set is the gold set, the original's only
number), and the per-label precision, recall, F1 and support.  Predictions have one row per
input row: ``label`` (the predicted ids, as in the input), plus ``logits``/``prob`` (each
label's sigmoid probability) on request.

No cross-validation runner: the original offered it for single-label classification only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from uer.config.fields import PROBABILITY, setting
from uer.errors import UerError, where
from uer.models.model import ModelOutput
from uer.tasks import TASKS, TaskData
from uer.tasks.classifier import (ClassifierModel, ClassifierTask, DeclaredClassesConfig, prediction_table,
                                  write_table)
from uer.tasks.metrics import multilabel_metrics, multilabel_report
from uer.tasks.tsv import BadRows

log = logging.getLogger("uer.finetune")

LABEL_SET = re.compile(r"\s*(\d+\s*(,\s*\d+\s*)*)?")
LABEL_FIX = "the label field holds class ids separated by commas, e.g. 0,2 (empty: no label applies)"


class MultilabelModel(ClassifierModel):
    """The classifier's head with one independent sigmoid per label: binary cross-entropy on multi-hot labels."""

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        logits = self.predict(batch).float()
        gold = batch["label"]
        loss = F.binary_cross_entropy_with_logits(logits, gold)
        count = torch.full((), float(gold.numel()), device=logits.device)  # a fill: no host-to-device copy
        return ModelOutput(loss, {"bce_loss": (loss.detach() * count, count)})


@dataclass
class MultilabelExample:
    src: list[int]
    seg: list[int]
    labels: tuple[int, ...]  # sorted, distinct; () when unlabelled or no label applies
    line: int


@dataclass
class MultilabelConfig(DeclaredClassesConfig):
    """``task=multilabel``: text (pair) classification into a set of labels."""

    threshold: float = setting(0.5, "a label is predicted when its probability is at least this",
                               bounds=PROBABILITY)


@TASKS.register("multilabel", config=MultilabelConfig)
class MultilabelTask(ClassifierTask):
    name = "multilabel"
    metrics = ("micro_f1", "macro_f1", "acc")

    @staticmethod
    def teacher_weight(cfg) -> None:
        return None  # no distillation from teacher logits

    def example(self, row: dict[str, str], line: int, split: str, labels_num: int | None,
                bad: BadRows) -> MultilabelExample | None:
        labels = ()
        if split != "infer":
            labels = self.label_set(row["label"], line, labels_num, bad)
            if labels is None:
                return None
        src, seg = self.encode(row["text_a"], row.get("text_b"))
        return MultilabelExample(src, seg, labels, line)

    def label_set(self, text: str, line: int, labels_num: int | None, bad: BadRows) -> tuple[int, ...] | None:
        """The distinct class ids of a label field, each checked as the classifier checks its label."""
        if not LABEL_SET.fullmatch(text):
            bad.bad(line, f"label field {text!r} is not class ids separated by commas", LABEL_FIX)
            return None
        labels = set()
        for piece in filter(None, (piece.strip() for piece in text.split(","))):
            label = self.class_id(piece, line, labels_num, bad)
            if label is None:
                return None
            labels.add(label)
        return tuple(sorted(labels))

    @staticmethod
    def labels_of(example: MultilabelExample) -> tuple[int, ...]:
        return example.labels

    def labels_num_from(self, train: TaskData) -> int:
        if not any(example.labels for example in train.examples):
            raise UerError(f"{where(train.path)}: no row holds a label, so there is nothing to learn; "
                           f"{LABEL_FIX}")
        return super().labels_num_from(train)

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return MultilabelModel(backbone, labels_num, self.cfg.pooling)

    def collate(self, examples: list[MultilabelExample]) -> dict[str, torch.Tensor]:
        batch = self.padded_inputs(examples)
        batch["label"] = self.multi_hot(examples, self.info["labels_num"])
        return batch

    @staticmethod
    def multi_hot(examples: list[MultilabelExample], labels_num: int) -> torch.Tensor:
        """(examples, labels_num) floats: 1 where the example holds the label."""
        hot = torch.zeros((len(examples), labels_num))
        for row, example in enumerate(examples):
            hot[row, list(example.labels)] = 1.0
        return hot

    def predicted(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """(examples, labels) booleans: the labels whose probability is at least ``task.threshold``."""
        return torch.sigmoid(torch.cat(outputs).float()) >= self.cfg.threshold

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        return multilabel_metrics(self.multi_hot(data.examples, labels_num).numpy(), self.predicted(outputs).numpy())

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict:
        """Precision, recall, F1 and support of each label."""
        return multilabel_report(self.multi_hot(data.examples, labels_num).numpy(), self.predicted(outputs).numpy())

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        logits = torch.cat(outputs).float()
        labels = [",".join(str(label) for label, on in enumerate(chosen) if on)
                  for chosen in self.predicted(outputs).tolist()]
        write_table(path, *prediction_table(labels, logits, torch.sigmoid(logits), output_logits=output_logits,
                                            output_prob=output_prob))
