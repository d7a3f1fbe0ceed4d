"""Text and text-pair classification (the original toolkit's ``run_classifier.py``).

Files: TSV with a header row naming ``label`` and ``text_a`` (and ``text_b`` for pairs)
in any order.  Inputs are ``[CLS] text_a [SEP]`` (``text_b [SEP]``) with segment 1 for
the first part and 2 for the second, cut to ``seq_length`` tokens; a batch is padded to
its own longest input.  The head is UER's: the pooled vector goes through
``output_layer_1`` (H -> H) and tanh, then ``output_layer_2`` (H -> labels_num).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from uer.errors import UerError, where
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.models.targets import classification_loss
from uer.tasks import TASKS, Task, TaskData
from uer.tasks.metrics import classification_metrics
from uer.tasks.tsv import BadRows, read_tsv

POOLINGS = ("first", "mean", "max", "last")


def pool(hidden: torch.Tensor, seg: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, H) -> (B, H) over the non-padding positions (``seg != 0``); inputs are right-padded."""
    if pooling == "first":
        return hidden[:, 0]
    keep = (seg != 0).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(~keep, torch.finfo(hidden.dtype).min).max(dim=1).values
    if pooling == "last":
        last = (seg != 0).sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    raise UerError(f"unknown task.pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")


class ClassifierModel(nn.Module):
    def __init__(self, backbone: nn.Module, labels_num: int, pooling: str):
        super().__init__()
        if pooling not in POOLINGS:
            raise UerError(f"unknown task.pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.pooling = pooling
        self.labels_num = labels_num
        hidden = backbone.hidden_size
        self.output_layer_1 = nn.Linear(hidden, hidden)
        self.output_layer_2 = nn.Linear(hidden, labels_num)
        self.output_layer_1.apply(init_bert_weights)
        self.output_layer_2.apply(init_bert_weights)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (B, labels_num)."""
        hidden = self.backbone(batch["src"], batch["seg"])
        pooled = pool(hidden, batch["seg"], self.pooling)
        return self.output_layer_2(torch.tanh(self.output_layer_1(pooled)))

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        loss, stats = classification_loss(self.predict(batch), batch["label"], "cls")
        return ModelOutput(loss, stats)


@dataclass
class ClsExample:
    src: list[int]
    seg: list[int]
    label: int  # -1 when unlabelled
    line: int


@TASKS.register("classifier")
class ClassifierTask(Task):
    name = "classifier"
    metrics = ("acc", "macro_f1")

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        if cfg["pooling"] not in POOLINGS:
            raise UerError(f"unknown task.pooling {cfg['pooling']!r}; choose one of: {', '.join(POOLINGS)}")
        if seq_length < 2:
            raise UerError(f"seq_length={seq_length} leaves no room for [CLS] and [SEP]; use at least 2")

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled = split != "infer"
        bad = BadRows(path, skip_bad_rows and labelled, "finetune.skip_bad_rows=true" if labelled else None)
        example_header = "label<TAB>text_a (or label<TAB>text_a<TAB>text_b)" if labelled else "text_a"
        table = read_tsv(path, required=("label", "text_a") if labelled else ("text_a",), bad=bad,
                         example=example_header)
        pair = table.has("text_b")
        self._check_pair(path, pair)
        label_at = table.index("label") if labelled else None
        a_at = table.index("text_a")
        b_at = table.index("text_b") if pair else None
        vocab = self.tokenizer.vocab
        examples = []
        for line, fields in table.rows:
            label = -1
            if labelled:
                label = self._label(fields[label_at], line, labels_num, bad)
                if label is None:
                    continue
            src = [vocab.cls_id, *self.tokenizer.encode(fields[a_at]), vocab.sep_id]
            seg = [1] * len(src)
            if pair:
                second = [*self.tokenizer.encode(fields[b_at]), vocab.sep_id]
                src += second
                seg += [2] * len(second)
            examples.append(ClsExample(src[:self.seq_length], seg[:self.seq_length], label, line))
        bad.summary()
        if not examples:
            raise UerError(f"{where(path)}: no usable rows; the file must hold a header row and at least one example")
        return TaskData(str(path), examples, skipped=bad.count)

    def _check_pair(self, path, pair: bool) -> None:
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
        labels_num = max(example.label for example in train.examples) + 1
        if labels_num < 2:
            raise UerError(f"{where(train.path)}: every label is 0, so there is nothing to classify; "
                           "check the label column, or set task.labels_num=N if the other classes are absent")
        return labels_num

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return ClassifierModel(backbone, labels_num, self.cfg["pooling"])

    def collate(self, examples: list[ClsExample]) -> dict[str, torch.Tensor]:
        width = max(len(example.src) for example in examples)
        src = torch.full((len(examples), width), self.tokenizer.vocab.pad_id, dtype=torch.long)
        seg = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            src[row, :len(example.src)] = torch.tensor(example.src)
            seg[row, :len(example.seg)] = torch.tensor(example.seg)
        label = torch.tensor([example.label for example in examples], dtype=torch.long)
        return {"src": src, "seg": seg, "label": label}

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        pred = torch.cat(outputs).argmax(dim=-1).tolist()
        gold = [example.label for example in data.examples]
        return classification_metrics(gold, pred, labels_num)

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        logits = torch.cat(outputs)
        probs = torch.softmax(logits, dim=-1)
        header = ["label"] + (["logits"] if output_logits else []) + (["prob"] if output_prob else [])
        lines = ["\t".join(header)]
        for row, label in enumerate(logits.argmax(dim=-1).tolist()):
            fields = [str(label)]
            if output_logits:
                fields.append(" ".join(f"{x:.6g}" for x in logits[row].tolist()))
            if output_prob:
                fields.append(" ".join(f"{x:.6g}" for x in probs[row].tolist()))
            lines.append("\t".join(fields))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
