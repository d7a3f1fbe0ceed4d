"""Text and text-pair classification (the original toolkit's ``run_classifier.py``).

Files: TSV with a header row naming ``label`` and ``text_a`` (and ``text_b`` for pairs)
in any order.  Inputs are ``[CLS] text_a [SEP]`` (``text_b [SEP]``) with segment 1 for
the first part and 2 for the second, cut to ``seq_length`` tokens; a batch is padded to
its own longest input.  The head (``task.head``) is UER's by default: the pooled vector goes
through ``output_layer_1`` (H -> H) and tanh, then ``output_layer_2`` (H -> labels_num);
``dense_gelu`` applies GELU instead of tanh (ELECTRA's head), ``linear`` keeps
``output_layer_2`` alone (with ``task.pooling=last`` and ``task.head_bias=false``: GPT-2's
``score``), so a Hugging Face classifier of those families converts both ways.

Distillation (``task.soft_targets=true``): the training file has one more column,
``logits``, holding the teacher's logits for the row -- ``labels_num`` numbers separated by
spaces (e.g. ``2.1 -0.7``).  The loss is ``soft_alpha * MSE(student logits, teacher
logits) + (1 - soft_alpha) * cross-entropy(label)``, with the MSE averaged over every
logit of the batch, and the report gains ``soft_loss`` (that MSE).  Only the training
file is read for logits; dev/test/infer files, and every file without
``soft_targets``, may have the column and it is ignored.  With ``task.labels_num`` unset,
the number of teacher logits is the number of classes.

Labels: with neither ``task.labels_num`` nor ``task.labels`` set, the classes are the ids
0..max of the training file's labels; the run says which labels it found and how often,
and stops (naming the file, line and label) when the set looks like a stray row made it:
a label far above the others (most ids in 0..max would have no row, e.g. ``1000`` among
0/1), or a label on fewer than one row in :data:`RARE_ONE_IN`.  Declaring the classes
(``task.labels=[0,1,1000]`` or ``task.labels_num=N``) accepts them; with ``task.labels``
a row holding another label is a bad row.

Long texts (``task.long_text=sliding``; the default ``cut`` keeps the first ``seq_length``
tokens): the input ``[CLS] a [SEP] (b [SEP])`` is read whole and split into windows, each
``[CLS]`` (what the tokenizer's framing starts with, if anything) and the next tokens (their
segments kept), starting every ``task.stride`` tokens until one reaches the end (:func:`windows`;
a row that fits is one window, the same input ``cut`` gives).  Every window is classified and the row's logits are
the ``task.window_pooling`` (mean or elementwise max) of its windows' (:func:`pool_windows`),
one prediction per row.  Training uses the same pooled logits: one loss per row, so the
model learns the score it predicts with (a window that says nothing about the label is not
pushed towards it).  ``finetune.batch_size`` counts rows; a batch holds all their windows.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from uer.errors import UerError, where
from uer.io.atomic import atomic_write_text
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.models.pooling import check_pooling, pool
from uer.models.targets import classification_loss
from uer.config.fields import PROBABILITY, at_least, setting
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.metrics import class_report, classification_metrics
from uer.tasks.tsv import BadRows, read_tsv

log = logging.getLogger("uer.finetune")

RARE_ONE_IN = 1000  # an inferred label on fewer rows than one in this many is taken for a stray row

# task.head: the activation between output_layer_1 and output_layer_2, or None where output_layer_2 alone scores.
CLASSIFIER_HEADS = {"dense_tanh": torch.tanh, "dense_gelu": F.gelu, "linear": None}


class ClassifierModel(nn.Module):
    """Pooled backbone output -> logits through ``head`` (:data:`CLASSIFIER_HEADS`; ``head_bias``: the linears'
    biases).  With ``soft_alpha`` set, a batch holding teacher logits (``soft``) is trained on
    ``soft_alpha * MSE + (1 - soft_alpha) * CE``.  A batch of sliding windows is scored per row: its windows'
    logits pooled by ``window_pooling``."""

    def __init__(self, backbone: nn.Module, labels_num: int, pooling: str, soft_alpha: float | None = None,
                 window_pooling: str = "mean", head: str = "dense_tanh", head_bias: bool = True):
        super().__init__()
        check_pooling(pooling, "task.pooling")
        self.backbone = backbone
        self.pooling = pooling
        self.window_pooling = window_pooling
        self.labels_num = labels_num
        self.soft_alpha = soft_alpha
        self.activation = CLASSIFIER_HEADS[check_head(head)]
        hidden = backbone.hidden_size
        # output_layer_1 is made before output_layer_2 and initialised after it: the default head draws its random
        # numbers in the order it always did, so a seed gives the model it gave before task.head existed.
        if self.activation is not None:
            self.output_layer_1 = nn.Linear(hidden, hidden, bias=head_bias)
        self.output_layer_2 = nn.Linear(hidden, labels_num, bias=head_bias)
        if self.activation is not None:
            self.output_layer_1.apply(init_bert_weights)
        self.output_layer_2.apply(init_bert_weights)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (B, labels_num); a batch of windows (``windows``: how many each row has) gives the rows'."""
        hidden = self.backbone(batch["src"], batch["seg"])
        pooled = pool(hidden, batch["seg"], self.pooling)
        if self.activation is not None:
            pooled = self.activation(self.output_layer_1(pooled))
        logits = self.output_layer_2(pooled)
        if "windows" in batch:
            return pool_windows(logits, batch["windows"], self.window_pooling)
        return logits

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        logits = self.predict(batch)
        loss, stats = classification_loss(logits, batch["label"], "cls")
        if self.soft_alpha is not None and "soft" in batch:
            soft_loss = F.mse_loss(logits.float(), batch["soft"].float())
            loss = self.soft_alpha * soft_loss + (1 - self.soft_alpha) * loss
            count = torch.full((), float(logits.size(0)), device=logits.device)
            stats["soft_loss"] = (soft_loss.detach() * count, count)
        return ModelOutput(loss, stats)


@dataclass
class ClsExample:
    src: list[int]
    seg: list[int]
    label: int  # -1 when unlabelled
    line: int
    soft: list[float] | None = None  # teacher logits (train file with task.soft_targets)


POOLING_HELP = "the vector classified: first ([CLS]) | mean | max | last"


@dataclass
class PooledTaskConfig(TaskConfig):
    pooling: str = setting("first", POOLING_HELP)


@dataclass
class DeclaredClassesConfig(PooledTaskConfig):
    """Keys of the tasks whose classes may be declared (else learnt from the training file)."""

    labels_num: Optional[int] = setting(None, "classes; null = max label in finetune.train_path + 1 (or in "
                                              "task.labels)", bounds=at_least(1))
    labels: Optional[list[int]] = setting(
        None, "the class ids the data holds, e.g. [0,1]: a row with another label is a bad row; null = inferred "
              "from finetune.train_path, reported, and refused when a label looks like a stray row (one row in "
              "thousands, or far above the others)")


@dataclass
class ClassifierConfig(DeclaredClassesConfig):
    """``task=classifier``: text (pair) classification."""

    head: str = setting("dense_tanh", "what scores the pooled vector: dense_tanh (output_layer_1, tanh, "
                                      "output_layer_2: BERT's pooler and classifier) | dense_gelu (GELU for tanh: "
                                      "ELECTRA's head) | linear (output_layer_2 alone: GPT-2's score, with "
                                      "task.pooling=last task.head_bias=false)")
    head_bias: bool = setting(True, "biases in the head's linear layers; false = none (GPT-2's score)")

    soft_targets: bool = setting(False, "distillation: train on a 'logits' column (teacher) mixed with the labels")
    soft_alpha: float = setting(0.5, "weight of the MSE on teacher logits; 1 - soft_alpha on cross-entropy",
                                bounds=PROBABILITY)
    long_text: str = setting("cut", "a row longer than seq_length: cut (its first seq_length tokens) | sliding "
                                    "(windows of seq_length tokens, task.stride apart, their logits pooled)")
    stride: Optional[int] = setting(None, "task.long_text=sliding: tokens from one window's start to the next, "
                                          "1..seq_length-1; null = half a window")
    window_pooling: str = setting("mean", "task.long_text=sliding: a row's logits from its windows': mean | max")


@TASKS.register("classifier", config=ClassifierConfig)
class ClassifierTask(Task):
    name = "classifier"
    metrics = ("acc", "macro_f1")

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        check_pooling(cfg.pooling, "task.pooling")
        if seq_length < 2:
            raise UerError(f"seq_length={seq_length} leaves no room for [CLS] and [SEP]; use at least 2")
        self.stride, self.window_pooling = sliding_windows(cfg, seq_length)  # None, None: rows are cut
        self.head = classifier_head(cfg)
        self.soft_alpha = self.teacher_weight(cfg)
        self.soft_targets = self.soft_alpha is not None
        self.declared_labels = declared_labels(cfg)
        self.prefix = len(tokenizer.framing.prefix)  # what every sliding window starts with

    @property
    def configured_labels_num(self) -> int | None:
        """``task.labels_num``, else the classes ``task.labels`` declares; None: learnt from the data."""
        if self.declared_labels is None:
            return super().configured_labels_num
        return getattr(self.cfg, "labels_num", None) or max(self.declared_labels) + 1

    @staticmethod
    def teacher_weight(cfg) -> float | None:
        """``task.soft_alpha`` when training on teacher logits (``task.soft_targets``), else None."""
        if not cfg.soft_targets:
            return None
        alpha = cfg.soft_alpha
        if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise UerError(f"task.soft_alpha={alpha} is the weight of the teacher-logit MSE; use a value in [0, 1]")
        return float(alpha)

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled = split != "infer"
        bad = BadRows(path, skip_bad_rows and labelled, "finetune.skip_bad_rows=true" if labelled else None)
        table = read_tsv(path, required=self.columns(split), bad=bad, example=self.header_example(split))
        self._check_pair(path, table.has("text_b"))
        soft = self.soft_targets and split == "train"
        if soft and not table.has("logits"):
            raise UerError(
                f"{where(path, 1)}: task.soft_targets=true needs a 'logits' column of teacher logits "
                f"(labels_num numbers separated by spaces) in the training file, but the header has "
                f"{', '.join(repr(c) for c in table.columns)}; add the column, or set task.soft_targets=false"
            )
        width = labels_num  # how many teacher logits each row must hold (null: as many as the first row)
        examples = []
        for line, fields in table.rows:
            row = dict(zip(table.columns, fields))
            example = self.example(row, line, split, labels_num, bad)
            if example is None:
                continue
            if soft:
                example.soft = self._teacher_logits(row["logits"], line, example.label, width, labels_num, bad)
                if example.soft is None:
                    continue
                width = len(example.soft)
            examples.append(example)
        bad.summary()
        if not examples:
            raise UerError(f"{where(path)}: no usable rows; the file must hold a header row and at least one example")
        if self.stride is not None:
            self._log_windows(path, examples)
        return TaskData(str(path), examples, skipped=bad.count)

    def _windows(self, example: ClsExample) -> list[tuple[list[int], list[int]]]:
        return windows(example.src, example.seg, self.seq_length, self.stride, self.prefix)

    def _log_windows(self, path, examples: list[ClsExample]) -> None:
        counts = [len(self._windows(example)) for example in examples]
        log.info("%s: %d of %d rows are longer than seq_length=%d; %d windows in all (task.stride=%d, up to %d a "
                 "row)", path, sum(count > 1 for count in counts), len(counts), self.seq_length, sum(counts),
                 self.stride, max(counts))

    def columns(self, split: str) -> tuple[str, ...]:
        """Columns the header of a ``split`` file must name."""
        return ("label", "text_a") if split != "infer" else ("text_a",)

    def header_example(self, split: str) -> str:
        """A header to suggest when one is wrong."""
        if split == "infer":
            return "text_a"
        logits = "<TAB>logits" if self.soft_targets and split == "train" else ""
        return f"label<TAB>text_a{logits} (or label<TAB>text_a<TAB>text_b{logits})"

    def example(self, row: dict[str, str], line: int, split: str, labels_num: int | None,
                bad: BadRows) -> ClsExample | None:
        """One row (``column -> field``) as an example, or None if ``bad`` skipped it."""
        label = -1
        if split != "infer":
            label = self.class_id(row["label"], line, labels_num, bad)
            if label is None:
                return None
        src, seg = self.encode(row["text_a"], row.get("text_b"))
        return ClsExample(src, seg, label, line)

    def class_id(self, text: str, line: int, labels_num: int | None, bad: BadRows) -> int | None:
        """The class id ``text`` holds, checked against ``task.labels`` if declared (else below ``labels_num``
        if known); None if ``bad`` skipped the row."""
        declared = self.declared_labels is not None  # then membership is the stricter check
        label = self._label(text, line, None if declared else labels_num, bad)
        if label is None:
            return None
        if declared and label not in self.declared_labels:
            bad.bad(line, f"label {label} is not one of task.labels={self.declared_labels}",
                    "fix the label, or add it to task.labels")
            return None
        return label

    def encode(self, text_a: str, text_b: str | None = None) -> tuple[list[int], list[int]]:
        """The tokenizer's framing of a (and b) -- ``[CLS] a [SEP] (b [SEP])`` with segments 1 (2) for BERT
        vocabularies, ``a </s>`` for T5 -- cut to ``seq_length`` unless windows slide."""
        encode = self.tokenizer.encode
        src, seg = self.tokenizer.framing.frame(encode(text_a), None if text_b is None else encode(text_b))
        keep = self.seq_length if self.stride is None else None  # sliding windows are cut in collate
        return src[:keep], seg[:keep]

    @staticmethod
    def _teacher_logits(text: str, line: int, label: int, width: int | None, labels_num: int | None,
                        bad: BadRows) -> list[float] | None:
        fix = "give one teacher logit per class, separated by spaces (e.g. 2.1 -0.7)"
        try:
            values = [float(x) for x in text.split()]
        except ValueError:
            bad.bad(line, f"logits {text!r} are not all numbers", fix)
            return None
        if not all(math.isfinite(x) for x in values):
            bad.bad(line, f"logits {text!r} are not all finite numbers", fix)
            return None
        if width is not None and len(values) != width:
            against = f"labels_num={labels_num}" if labels_num is not None else f"earlier rows hold {width}"
            bad.bad(line, f"the logits column holds {len(values)} values but {against}", fix)
            return None
        if len(values) < 2:
            bad.bad(line, f"the logits column holds {len(values)} value{'' if len(values) == 1 else 's'}", fix)
            return None
        if label >= len(values):
            bad.bad(line, f"label {label} has no teacher logit: the logits column holds {len(values)} values", fix)
            return None
        return values

    def _check_pair(self, path, pair: bool) -> None:
        if pair and self.tokenizer.framing.pair is None:
            raise UerError(f"{where(path, 1)}: the header has a text_b column, but the tokenizer "
                           f"{self.tokenizer.vocab.path} puts nothing between two texts (no separator token in its "
                           "post-processor, no sep_token): the model could not tell where text_a ends; give single "
                           "texts, or a tokenizer whose post-processor separates pairs (tokenizers' "
                           "TemplateProcessing pair=...)")
        known = self.info.get("text_pair")
        if known is None:
            self.info["text_pair"] = pair
            return
        if pair != known:
            model = "text pairs (text_a, text_b)" if known else "single texts (text_a)"
            has = "a text_b column" if pair else "no text_b column"
            raise UerError(
                f"{where(path, 1)}: the header has {has} but the model is fine-tuned on {model}; "
                f"give this file the same columns as the training file"
            )

    @staticmethod
    def _label(text: str, line: int, labels_num: int | None, bad: BadRows) -> int | None:
        try:
            label = int(text.strip())
        except ValueError:
            bad.bad(line, f"label {text!r} is not an integer", "labels are class ids 0, 1, 2, ...")
            return None
        if label < 0:
            bad.bad(line, f"label {label} is negative", "labels are class ids 0, 1, 2, ...")
            return None
        if labels_num is not None and label >= labels_num:
            bad.bad(line, f"label {label} is not below labels_num={labels_num}",
                    f"set task.labels_num={label + 1} (or more) or fix the label")
            return None
        return label

    def labels_num_from(self, train: TaskData) -> int:
        if self.soft_targets:
            return len(train.examples[0].soft)  # every row holds one teacher logit per class
        counts = Counter(label for example in train.examples for label in self.labels_of(example))
        labels_num = max(counts) + 1
        log.info("%s: labels found: %s -> labels_num=%d", train.path,
                 ", ".join(f"{label} ({counts[label]} rows)" for label in sorted(counts)), labels_num)
        if labels_num < 2:
            raise UerError(f"{where(train.path)}: every label is 0, so there is nothing to classify; "
                           "check the label column, or set task.labels_num=N if the other classes are absent")
        self._check_inferred_labels(train, counts, labels_num)
        return labels_num

    def _check_inferred_labels(self, train: TaskData, counts: Counter, labels_num: int) -> None:
        """A UerError naming the row of a label that looks like a stray one: far above the others, or rare."""
        label, why = suspect_label(counts, labels_num)
        if label is None:
            return
        line = next(example.line for example in train.examples if label in self.labels_of(example))
        declare = f"task.labels_num={labels_num}"
        if hasattr(self.cfg, "labels"):
            declare = f"task.labels=[{','.join(map(str, sorted(counts)))}] (or {declare})"
        raise UerError(f"{where(train.path, line)}: label {label} {why}, so the classes inferred from the data "
                       f"would be {labels_num}; fix the row, or declare the classes: {declare}")

    @staticmethod
    def labels_of(example: ClsExample) -> tuple[int, ...]:
        """The class ids a training example holds (one for a classifier)."""
        return (example.label,)

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return ClassifierModel(backbone, labels_num, self.cfg.pooling, soft_alpha=self.soft_alpha,
                               window_pooling=self.window_pooling, **self.head)

    def length(self, example: ClsExample) -> int:
        """The input's tokens, at most ``seq_length`` (the width of a window)."""
        return min(len(example.src), self.seq_length)

    def collate(self, examples: list[ClsExample]) -> dict[str, torch.Tensor]:
        batch = self.padded_inputs(examples)
        batch["label"] = torch.tensor([example.label for example in examples], dtype=torch.long)
        if all(example.soft is not None for example in examples):
            batch["soft"] = torch.tensor([example.soft for example in examples], dtype=torch.float)
        return batch

    def padded_inputs(self, examples: list) -> dict[str, torch.Tensor]:
        """``src`` and ``seg`` of ``examples``, right-padded to the longest of them; with sliding windows, each
        row's windows in turn and ``windows`` (how many each row has)."""
        if self.stride is None:
            inputs = [(example.src, example.seg) for example in examples]
        else:
            per_row = [self._windows(example) for example in examples]
            inputs = [window for row in per_row for window in row]
        width = max(len(src) for src, _ in inputs)
        src = torch.full((len(inputs), width), self.tokenizer.vocab.pad_id, dtype=torch.long)
        seg = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, (ids, segments) in enumerate(inputs):
            src[row, :len(ids)] = torch.tensor(ids)
            seg[row, :len(segments)] = torch.tensor(segments)
        batch = {"src": src, "seg": seg}
        if self.stride is not None:
            batch["windows"] = torch.tensor([len(row) for row in per_row], dtype=torch.long)
        return batch

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        pred = torch.cat(outputs).argmax(dim=-1).tolist()
        gold = [example.label for example in data.examples]
        return classification_metrics(gold, pred, labels_num)

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict:
        """Precision, recall, F1 and support of each label, and the confusion matrix."""
        pred = torch.cat(outputs).argmax(dim=-1).tolist()
        return class_report([example.label for example in data.examples], pred, labels_num)

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        header, rows = self.prediction_columns(torch.cat(outputs), output_logits=output_logits,
                                               output_prob=output_prob)
        write_table(path, header, rows)

    @staticmethod
    def prediction_columns(logits: torch.Tensor, *, output_logits: bool,
                           output_prob: bool) -> tuple[list[str], list[list[str]]]:
        """Header and per-row fields: ``label`` (argmax), then ``logits``/``prob`` (space-separated) if asked."""
        return prediction_table([str(label) for label in logits.argmax(dim=-1).tolist()], logits,
                                torch.softmax(logits, dim=-1), output_logits=output_logits, output_prob=output_prob)


def prediction_table(labels: list[str], logits: torch.Tensor, probs: torch.Tensor, *, output_logits: bool,
                     output_prob: bool) -> tuple[list[str], list[list[str]]]:
    """Header and per-row fields: ``label`` (as given), then ``logits``/``prob`` (space-separated) if asked."""
    header = ["label"] + (["logits"] if output_logits else []) + (["prob"] if output_prob else [])
    rows = []
    for row, label in enumerate(labels):
        fields = [label]
        if output_logits:
            fields.append(" ".join(f"{x:.6g}" for x in logits[row].tolist()))
        if output_prob:
            fields.append(" ".join(f"{x:.6g}" for x in probs[row].tolist()))
        rows.append(fields)
    return header, rows


def check_head(head: str) -> str:
    """``head`` if it is one of :data:`CLASSIFIER_HEADS`; else a UerError naming ``task.head``."""
    if head not in CLASSIFIER_HEADS:
        raise UerError(f"task.head={head} is not known; choose one of: {', '.join(CLASSIFIER_HEADS)}")
    return head


def classifier_head(cfg) -> dict:
    """``head`` and ``head_bias`` of :class:`ClassifierModel` from ``task.head``/``task.head_bias`` (checked); the
    default head for the tasks whose schema has no such keys (dbqa)."""
    if not hasattr(cfg, "head"):
        return {}
    return {"head": check_head(cfg.head), "head_bias": bool(cfg.head_bias)}


LONG_TEXT = ("cut", "sliding")
WINDOW_POOLINGS = ("mean", "max")


def sliding_windows(cfg, seq_length: int) -> tuple[int, str] | tuple[None, None]:
    """``(stride, window pooling)`` under ``task.long_text=sliding`` (the stride checked against
    ``seq_length``, null made half a window), ``(None, None)`` when rows are cut or the task has no such keys."""
    if not hasattr(cfg, "long_text"):
        return None, None
    mode, stride, pooling = cfg.long_text, cfg.stride, cfg.window_pooling
    if mode not in LONG_TEXT:
        raise UerError(f"task.long_text={mode} is not known; choose one of: {', '.join(LONG_TEXT)}")
    if pooling not in WINDOW_POOLINGS:
        raise UerError(f"task.window_pooling={pooling} is not known; choose one of: {', '.join(WINDOW_POOLINGS)}")
    if mode == "cut":
        return None, None
    width = seq_length - 1  # a window is [CLS] and this many tokens of the input
    if stride is None:
        return max(width // 2, 1), pooling
    if not 1 <= stride <= width:
        raise UerError(f"task.stride={stride} is not between 1 and {width}: a window holds [CLS] and seq_length - 1 "
                       f"= {width} tokens (seq_length={seq_length}), and the next starts task.stride tokens later, "
                       f"so 0 or less never moves and more skips tokens; use task.stride=1..{width}, "
                       "or null for half a window (a model fine-tuned with this stride: infer at a longer "
                       "infer.seq_length)")
    return stride, pooling


def windows(src: list[int], seg: list[int], seq_length: int, stride: int,
            prefix: int = 1) -> list[tuple[list[int], list[int]]]:
    """The windows ``(src, seg)`` of one input ``[CLS] tokens``: ``[CLS]`` (the ``prefix`` tokens the tokenizer's
    framing starts with: 1 for ``[CLS]``, 0 for GPT-2) then ``seq_length - prefix`` tokens starting at token 0,
    stride, 2 * stride, ... until a window reaches the last token (that one may be shorter).  An input of at
    most ``seq_length`` tokens is one window, itself."""
    width = seq_length - prefix
    starts = [0]
    while starts[-1] + width < len(src) - prefix:
        starts.append(starts[-1] + stride)
    return [(src[:prefix] + src[prefix + start:prefix + start + width],
             seg[:prefix] + seg[prefix + start:prefix + start + width]) for start in starts]


def pool_windows(logits: torch.Tensor, counts: torch.Tensor, how: str) -> torch.Tensor:
    """(windows, C) -> (rows, C): each row's ``counts[row]`` consecutive windows, by their ``mean`` or
    elementwise ``max``; on the device, without reading ``counts`` back to the host."""
    rows = torch.repeat_interleave(torch.arange(counts.size(0), device=counts.device), counts,
                                   output_size=logits.size(0))
    if how == "max":  # -inf start: a window's value never ties with the start (which would halve its gradient)
        start = logits.new_full((counts.size(0), logits.size(1)), float("-inf"))
        return start.scatter_reduce(0, rows.unsqueeze(1).expand_as(logits), logits, "amax", include_self=False)
    sums = logits.new_zeros(counts.size(0), logits.size(1)).index_add(0, rows, logits)
    return sums / counts.unsqueeze(1).to(logits.dtype)


def declared_labels(cfg) -> list[int] | None:
    """``task.labels`` checked: distinct class ids, none negative, all below ``task.labels_num`` if set."""
    labels = getattr(cfg, "labels", None)
    if labels is None:
        return None
    labels = [int(label) for label in labels]
    fix = "list the class ids the data holds, e.g. task.labels=[0,1]"
    if not labels or min(labels) < 0 or len(set(labels)) != len(labels):
        raise UerError(f"task.labels={labels} must be distinct class ids 0, 1, 2, ...; {fix}")
    labels_num = getattr(cfg, "labels_num", None)
    if labels_num is not None and max(labels) >= labels_num:
        raise UerError(f"task.labels={labels} holds {max(labels)}, not below task.labels_num={labels_num}; raise "
                       "task.labels_num or leave it null (max of task.labels + 1)")
    return sorted(labels)


def suspect_label(counts: Counter, labels_num: int) -> tuple[int | None, str]:
    """``(label, why)`` for a label of an inferred set that looks like a stray row, else ``(None, "")``: the
    highest label when most ids up to it have no row; else the rarest label if it is on fewer rows than one
    in RARE_ONE_IN."""
    absent = labels_num - len(counts)
    if absent > len(counts):
        top = max(counts)
        others = ", ".join(map(str, sorted(counts)[:-1][:10]))
        return top, (f"is far above the other labels ({others}): {absent} of the ids 0..{top} would be classes "
                     "without a row")
    total = sum(counts.values())
    rare = min(counts, key=lambda label: (counts[label], label))
    if counts[rare] * RARE_ONE_IN < total:
        return rare, f"is on {counts[rare]} of {total} rows"
    return None, ""


def write_table(path, header: list[str], rows: list[list[str]]) -> None:
    """A TSV file with a header row, written in one go."""
    lines = ["\t".join(header), *("\t".join(fields) for fields in rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")
