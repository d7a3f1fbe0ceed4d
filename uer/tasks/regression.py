"""Regression of a score from a text (pair), as STS-B's similarity scores (the original toolkit's
``run_regression.py``).

Files: TSV with a header row naming ``label`` and ``text_a`` (and ``text_b`` for pairs), in any
order, as for ``task=classifier``; ``label`` holds the row's target, a finite number::

    label	text_a	text_b
    4.25	一个男人在弹吉他。	有人在弹吉他。
    0.5	一个女人在切洋葱。	一个男人在游泳。

Inputs and pooled head are the classifier's, with one output trained by mean squared error
on the raw targets.  Dev/test report ``spearman`` and ``pearson``, the Spearman rank and
Pearson correlations of predictions with targets (``scipy.stats``, as the sentence tasks
score; Spearman picks the best epoch by default, as in the original); a labelled file whose
targets are all equal is refused (no correlation is defined), and predictions that are all
equal score 0 on both.  Predictions have one row per input row: ``score``.

No cross-validation runner: the original offered it for classification only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from uer.errors import UerError, where
from uer.models.model import ModelOutput
from uer.tasks import TASKS, TaskData
from uer.tasks.classifier import ClassifierModel, ClassifierTask, PooledTaskConfig, write_table
from uer.tasks.sentence_embedding import sts_correlations
from uer.tasks.tsv import BadRows

log = logging.getLogger("uer.finetune")

TARGET_FIX = "the label field holds the row's target score, a number such as 3.8"


class RegressionModel(ClassifierModel):
    """The classifier's head with one output, trained by mean squared error."""

    def __init__(self, backbone: nn.Module, pooling: str):
        super().__init__(backbone, 1, pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        score = self.predict(batch).float().squeeze(-1)
        loss = F.mse_loss(score, batch["label"])
        count = torch.full((), float(score.numel()), device=score.device)  # a fill: no host-to-device copy
        return ModelOutput(loss, {"mse_loss": (loss.detach() * count, count)})


@dataclass
class ScoreExample:
    src: list[int]
    seg: list[int]
    label: float  # nan when unlabelled
    line: int


@TASKS.register("regression", config=PooledTaskConfig)
class RegressionTask(ClassifierTask):
    name = "regression"
    metrics = ("spearman", "pearson")

    @staticmethod
    def teacher_weight(cfg) -> None:
        return None  # no distillation from teacher logits

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        data = super().read(path, split=split, labels_num=labels_num, skip_bad_rows=skip_bad_rows)
        targets = {example.label for example in data.examples}
        if split != "infer" and len(targets) == 1:
            raise UerError(f"{where(path)}: every row's target is {targets.pop()}, so no correlation with it is "
                           f"defined; give rows with different targets ({TARGET_FIX})")
        return data

    def example(self, row: dict[str, str], line: int, split: str, labels_num: int | None,
                bad: BadRows) -> ScoreExample | None:
        target = math.nan
        if split != "infer":
            text = row["label"].strip()
            try:
                target = float(text)
            except ValueError:
                bad.bad(line, f"label {text!r} is not a number", TARGET_FIX)
                return None
            if not math.isfinite(target):
                bad.bad(line, f"label {text!r} is not a finite number", TARGET_FIX)
                return None
        src, seg = self.encode(row["text_a"], row.get("text_b"))
        return ScoreExample(src, seg, target, line)

    def labels_num_from(self, train: TaskData) -> int:
        return 1  # one output: the score

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return RegressionModel(backbone, self.cfg.pooling)

    def collate(self, examples: list[ScoreExample]) -> dict[str, torch.Tensor]:
        batch = self.padded_inputs(examples)
        batch["label"] = torch.tensor([example.label for example in examples], dtype=torch.float)
        return batch

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        return sts_correlations(torch.cat(outputs).reshape(-1).tolist(), [example.label for example in data.examples])

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict:
        return {}  # no classes to report on

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        if output_logits or output_prob:
            log.warning("regression predictions are scores: infer.output_logits and infer.output_prob add no column")
        write_table(path, ["score"], [[f"{score:.6g}"] for score in torch.cat(outputs).reshape(-1).tolist()])

