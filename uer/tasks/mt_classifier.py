"""Multi-task classification (the original toolkit's ``run_classifier_mt.py``).

``task.dataset_paths`` names folders, each holding a classifier ``train.tsv`` and
``dev.tsv`` (and optionally ``test.tsv``), in the format of ``task=classifier``.  One
backbone is shared; each dataset ``i`` gets its own head, UER's classifier head under the
original names ``output_layers_1.{i}`` (H -> H, tanh) and ``output_layers_2.{i}``
(H -> labels of dataset ``i``).  Every dataset has its own number of classes (counted from
its ``train.tsv``; ``task.labels_num``, if set, applies to every dataset).  All datasets
must have the same columns (all single texts, or all ``text_a``/``text_b`` pairs).

How it trains is :mod:`uer.stages.multi_task`.  ``predict`` returns the logits of every
head side by side (``(B, sum of labels)``); scoring a dataset's file uses its head's
slice, and ``stage=infer`` writes every head's prediction for each input row:
``label_0``, ``label_1``, ... (dataset ``i``'s class), then ``logits_i``/``prob_i`` on
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from uer.config.fields import at_least, setting
from uer.errors import UerError, where
from uer.io.atomic import atomic_write_text
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.models.pooling import check_pooling, pool
from uer.models.targets import classification_loss
from uer.tasks import TASKS, TaskData
from uer.tasks.classifier import ClassifierTask, PooledTaskConfig
from uer.tasks.metrics import class_report, classification_metrics


class MtClassifierModel(nn.Module):
    def __init__(self, backbone: nn.Module, labels_nums: list[int], pooling: str):
        super().__init__()
        check_pooling(pooling, "task.pooling")
        self.backbone = backbone
        self.pooling = pooling
        self.labels_nums = list(labels_nums)
        hidden = backbone.hidden_size
        self.output_layers_1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in self.labels_nums)
        self.output_layers_2 = nn.ModuleList(nn.Linear(hidden, n) for n in self.labels_nums)
        self.output_layers_1.apply(init_bert_weights)
        self.output_layers_2.apply(init_bert_weights)

    def _pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return pool(self.backbone(batch["src"], batch["seg"]), batch["seg"], self.pooling)

    def _head(self, index: int, pooled: torch.Tensor) -> torch.Tensor:
        return self.output_layers_2[index](torch.tanh(self.output_layers_1[index](pooled)))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every head's logits, concatenated: (B, sum of labels_nums)."""
        pooled = self._pooled(batch)
        return torch.cat([self._head(index, pooled) for index in range(len(self.labels_nums))], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Cross-entropy of each row under its own dataset's head (``batch["dataset"]``)."""
        pooled = self._pooled(batch)
        dataset, label = batch["dataset"], batch["label"]
        total, stats = None, {}
        for index in torch.unique(dataset).tolist():
            rows = dataset == index
            loss, part = classification_loss(self._head(index, pooled[rows]), label[rows], "cls")
            loss = loss * rows.sum()
            total = loss if total is None else total + loss
            for name, (num, den) in part.items():
                stats[name] = (num, den) if name not in stats else (stats[name][0] + num, stats[name][1] + den)
        return ModelOutput(total / dataset.numel(), stats)


@dataclass
class MtClassifierConfig(PooledTaskConfig):
    """``task=mt_classifier``: one backbone, one classifier head per dataset."""

    labels_num: Optional[int] = setting(None, "classes of every dataset; null = counted per dataset from its "
                                              "train.tsv", bounds=at_least(1))
    dataset_paths: list[str] = setting([], "folders holding train.tsv and dev.tsv (and optionally test.tsv), "
                                           "e.g. [datasets/test_data/book_review,datasets/test_data/chnsenticorp]")


@TASKS.register("mt_classifier", config=MtClassifierConfig)
class MtClassifierTask(ClassifierTask):
    name = "mt_classifier"
    finetune_runner = "multi_task"

    @staticmethod
    def teacher_weight(cfg) -> None:
        return None  # mt_classifier trains on the labels of its datasets only

    @property
    def labels_nums(self) -> list[int]:
        return list(self.info.get("labels_nums") or [])

    def read_dataset(self, index: int, path, *, split: str, labels_num: int | None,
                     skip_bad_rows: bool) -> TaskData:
        """``read`` a file of dataset ``index``; scoring it then uses that dataset's head."""
        data = self.read(path, split=split, labels_num=labels_num, skip_bad_rows=skip_bad_rows)
        data.info["dataset"] = index
        return data

    def _check_pair(self, path, pair: bool) -> None:
        known = self.info.get("text_pair")
        if known is None or pair == known:
            super()._check_pair(path, pair)
            return
        has = "a text_b column" if pair else "no text_b column"
        other = "text pairs (text_a, text_b)" if known else "single texts (text_a)"
        raise UerError(f"{where(path, 1)}: the header has {has} but the other files of this mt_classifier model "
                       f"hold {other}; every dataset of task.dataset_paths (and the infer file) needs the same "
                       "columns")

    def build_model(self, backbone: nn.Module, labels_num: int | None = None) -> nn.Module:
        if not self.labels_nums:
            raise UerError("mt_classifier has no datasets: its task info lists no labels_nums; "
                           "fine-tune it with task.dataset_paths=[DIR1,DIR2,...]")
        return MtClassifierModel(backbone, self.labels_nums, self.cfg.pooling)

    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        batch = super().collate(examples)
        batch.pop("soft", None)
        return batch

    def head_logits(self, logits: torch.Tensor, index: int) -> torch.Tensor:
        """Dataset ``index``'s columns of the concatenated logits."""
        start = sum(self.labels_nums[:index])
        return logits[:, start:start + self.labels_nums[index]]

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int | None = None) -> dict[str, float]:
        return classification_metrics(*self.gold_and_predicted(outputs, data))

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int | None = None) -> dict:
        """The classifier's report of the dataset's own head."""
        return class_report(*self.gold_and_predicted(outputs, data))

    def gold_and_predicted(self, outputs: list[torch.Tensor], data: TaskData) -> tuple[list[int], list[int], int]:
        """Gold labels, the head of ``data``'s dataset's predictions, and that head's labels_num."""
        index = data.info.get("dataset")
        if index is None:
            raise ValueError(f"{data.path} was not read with read_dataset, so its head is unknown")
        pred = self.head_logits(torch.cat(outputs), index).argmax(dim=-1).tolist()
        return [example.label for example in data.examples], pred, self.labels_nums[index]

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        logits = torch.cat(outputs)
        heads = range(len(self.labels_nums))
        parts = [self.head_logits(logits, index) for index in heads]
        columns = [[str(label) for label in part.argmax(dim=-1).tolist()] for part in parts]
        header = [f"label_{index}" for index in heads]
        for wanted, name, transform in ((output_logits, "logits", lambda x: x),
                                        (output_prob, "prob", lambda x: torch.softmax(x, dim=-1))):
            if wanted:
                header += [f"{name}_{index}" for index in heads]
                columns += [[" ".join(f"{x:.6g}" for x in row) for row in transform(part).tolist()] for part in parts]
        lines = ["\t".join(header), *("\t".join(fields) for fields in zip(*columns))]
        atomic_write_text(path, "\n".join(lines) + "\n")
