"""Document-based question answering (the original toolkit's ``run_dbqa.py``): for each
question, rank candidate sentences by how likely they answer it.

Files: TSV with a header row naming ``qid``, ``label``, ``text_a`` and ``text_b``, in
any order, as NLPCC-DBQA in UER's format::

    qid	label	text_a	text_b
    0	1	长城有多长？	长城全长两万一千多公里。
    0	0	长城有多长？	长城是世界文化遗产。
    1	0	...

``qid`` is the question's id (any non-empty text; all rows with the same id are one
question, wherever they are in the file), ``label`` is 1 if the sentence ``text_b``
answers the question ``text_a`` and 0 if not.  Files for ``stage=infer`` need ``qid``,
``text_a`` and ``text_b`` (a ``label`` column is ignored).

Each row is a text pair scored by the classifier (same inputs, head and pooling, two
labels).  Candidates are ranked by ``logit_1 - logit_0``, which orders them as the
probability of label 1 does without that probability's float rounding to 1.0 for very
sure candidates.  Dev/test report ``mrr`` and ``map`` over all questions (as in
:mod:`uer.tasks.ranking_metrics`; a question without a relevant candidate scores 0 and
is counted in the log), ``acc``, the accuracy of the 0/1 prediction over all rows, and
``f1``, the F1 of label 1 over all rows (the F1 published with NLPCC-DBQA MRR).
Predictions have one row per input row: ``qid``, ``score`` (the probability of label 1),
``label`` (the predicted one), plus ``logits``/``prob`` on request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from uer.errors import UerError, where
from uer.tasks import TASKS, TaskData
from uer.tasks.classifier import ClassifierTask, ClsExample, PooledTaskConfig, write_table
from uer.tasks.metrics import accuracy, per_class_prf
from uer.tasks.ranking_metrics import ranking_metrics
from uer.tasks.tsv import BadRows

log = logging.getLogger("uer.tasks")

LABEL_FIX = "dbqa labels are 1 (text_b answers the question text_a) or 0 (it does not)"


@dataclass
class DbqaExample(ClsExample):
    qid: str = ""


@TASKS.register("dbqa", config=PooledTaskConfig)
class DbqaTask(ClassifierTask):
    name = "dbqa"
    metrics = ("mrr", "map", "acc", "f1")

    @staticmethod
    def teacher_weight(cfg) -> None:
        return None  # dbqa trains on its 0/1 labels only

    def columns(self, split: str) -> tuple[str, ...]:
        return ("qid", "label", "text_a", "text_b") if split != "infer" else ("qid", "text_a", "text_b")

    def header_example(self, split: str) -> str:
        return "<TAB>".join(self.columns(split))

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        data = super().read(path, split=split, labels_num=labels_num, skip_bad_rows=skip_bad_rows)
        if split != "infer" and not any(example.label == 1 for example in data.examples):
            raise UerError(f"{where(path)}: no row has label 1, so no question has a relevant candidate "
                           f"and there is nothing to rank; {LABEL_FIX}")
        return data

    def example(self, row: dict[str, str], line: int, split: str, labels_num: int | None,
                bad: BadRows) -> DbqaExample | None:
        qid = row["qid"].strip()
        if not qid:
            bad.bad(line, "the qid field is empty", "give every row the id of its question")
            return None
        example = super().example(row, line, split, labels_num, bad)
        if example is None:
            return None
        return DbqaExample(**vars(example), qid=qid)

    @staticmethod
    def _label(text: str, line: int, labels_num: int | None, bad: BadRows) -> int | None:
        try:
            label = int(text.strip())
        except ValueError:
            bad.bad(line, f"label {text!r} is not an integer", LABEL_FIX)
            return None
        if label not in (0, 1):
            bad.bad(line, f"label {label} is not 0 or 1", LABEL_FIX)
            return None
        return label

    def labels_num_from(self, train: TaskData) -> int:
        return 2

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return super().build_model(backbone, 2)

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        logits = torch.cat(outputs).float()
        margins = (logits[:, 1] - logits[:, 0]).tolist()
        gold = [example.label for example in data.examples]
        ranking = ranking_metrics([example.qid for example in data.examples], margins, gold)
        if ranking["unanswerable"]:
            log.info("%s: %d of %d questions have no relevant candidate; they score 0 in MRR and MAP",
                     data.path, ranking["unanswerable"], ranking["questions"])
        pred = logits.argmax(dim=-1).tolist()
        return {"mrr": ranking["mrr"], "map": ranking["map"], "acc": accuracy(gold, pred),
                "f1": per_class_prf(gold, pred, 2).get(1, (0.0, 0.0, 0.0, 0))[2]}

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        logits = torch.cat(outputs)
        scores = torch.softmax(logits.float(), dim=-1)[:, 1].tolist()
        header, rows = self.prediction_columns(logits, output_logits=output_logits, output_prob=output_prob)
        write_table(path, ["qid", "score", *header],
                    [[example.qid, f"{score:.6g}", *fields]
                     for example, score, fields in zip(data.examples, scores, rows)])
