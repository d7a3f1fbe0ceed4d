"""Named-entity recognition as BIO sequence labelling (the original toolkit's ``run_ner.py``).

Files: TSV with a header row naming ``text_a`` and ``label`` (any order).  ``text_a`` is
the sentence as space-separated units (one character each, for Chinese), ``label`` one
tag per unit, also space-separated: ``O``, ``B-TYPE`` (an entity begins) or ``I-TYPE``
(it goes on).  Runs of spaces count as one separator.  The infer file needs only
``text_a``.

Inputs: every unit is looked up as ONE vocabulary id (no WordPiece splitting, so tags
stay aligned with tokens; a unit the vocabulary lacks is ``[UNK]``, and with a
lowercasing tokenizer a unit missing as written is tried lowercased), ``[CLS]`` goes in
front, and the input is cut to ``seq_length`` tokens, i.e. the first ``seq_length - 1``
units.  The ``[CLS]`` position and the padding carry label -100 and are left out of the
loss.

Tags: ``task.label2id_path`` is a JSON object ``{"O": 0, "B-LOC": 1, ...}`` with ids
0..n-1; when it is null the tags are collected from ``finetune.train_path`` (sorted,
``O`` first and always present).  Either way the mapping is stored in the checkpoint
(``task_info.label2id``), so ``stage=infer`` needs nothing but the checkpoint.

Head: UER's ``output_layer`` (H -> labels) on every token; cross-entropy over the real
tokens, reported as ``ner_loss``/``ner_acc`` (token accuracy).  With ``task.crf=true`` a
linear-chain CRF (:mod:`uer.models.crf`) sits on those scores over the characters (not
``[CLS]``): the loss is the gold paths' negative log-likelihood per character, and tags
are the Viterbi path.  The checkpoint's config keeps ``task.crf``, so ``stage=infer``
decodes the same way.

Scores, as ``conlleval`` (the CoNLL shared tasks' script) computes them on the prediction
file: entity-level precision, recall and F1 (:func:`entity_scores`) and tag accuracy
(:func:`tag_accuracy`), over whole sentences -- units beyond ``seq_length``, which the
model never saw, count as predicted ``O``, as in the prediction file.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from uer.config.fields import setting
from uer.errors import UerError, where
from uer.io.atomic import atomic_write_text
from uer.models.crf import Crf
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.models.targets import classification_loss
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.metrics import prf
from uer.tasks.tsv import BadRows, read_tsv

log = logging.getLogger("uer.tasks")

OUTSIDE = "O"
IGNORE = -100  # label of [CLS] and padding: no loss, not scored


# --------------------------------------------------------------------------- metrics

def bio_entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """The entities of one tag sequence as ``(start, end exclusive, type)``, in order.

    The rule (conlleval's for BIO): ``B-X`` always starts an entity of type ``X``;
    ``I-X`` continues the open entity when that entity has type ``X``, and otherwise
    (after ``O``, after another type, or at the start) starts a new one; ``O`` (or any
    tag that is neither ``B-`` nor ``I-``) ends the open entity.  The type is all that
    follows the first ``-``.
    """
    found = []
    start, kind = None, None
    for position, tag in enumerate([*tags, OUTSIDE]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and name and start is not None and name == kind
        if continues:
            continue
        if start is not None:
            found.append((start, position, kind))
            start, kind = None, None
        if prefix in ("B", "I") and name:
            start, kind = position, name
    return found


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level ``precision``, ``recall`` and ``f1`` over sentences of tags.

    An entity (:func:`bio_entities`) is right only when a gold entity has exactly its
    start, end and type.  Precision = right / predicted entities, recall = right / gold
    entities, F1 their harmonic mean; each is 0 when its denominator is 0 (so no gold and
    no predicted entities at all scores 0, not 1).
    """
    counts = list(entity_counts(gold, pred).values())
    precision, recall, f1 = prf(*(sum(count[slot] for count in counts) for slot in range(3)))
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_report(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """``{"per_class": {type: {precision, recall, f1, support}}}``: :func:`entity_scores` of each entity type
    (support: its gold entities), types in alphabetical order."""
    per_type = {}
    for kind, (right, predicted, expected) in sorted(entity_counts(gold, pred).items()):
        precision, recall, f1 = prf(right, predicted, expected)
        per_type[kind] = {"precision": precision, "recall": recall, "f1": f1, "support": expected}
    return {"per_class": per_type}


def entity_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, tuple[int, int, int]]:
    """``type -> (right, predicted, gold)`` entity counts of every type seen in gold or predictions."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    counts: dict[str, list[int]] = {}
    for number, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {number}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        gold_set, pred_set = set(bio_entities(gold_tags)), set(bio_entities(pred_tags))
        for entities, slot in ((gold_set & pred_set, 0), (pred_set, 1), (gold_set, 2)):
            for _, _, kind in entities:
                counts.setdefault(kind, [0, 0, 0])[slot] += 1
    return {kind: tuple(values) for kind, values in counts.items()}


def tag_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """The fraction of units whose predicted tag equals the gold one (conlleval's "accuracy")."""
    total = sum(len(tags) for tags in gold)
    right = sum(g == p for gold_tags, pred_tags in zip(gold, pred) for g, p in zip(gold_tags, pred_tags))
    return right / total if total else 0.0


# --------------------------------------------------------------------------- tags

def _tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a BIO tag, or None."""
    if tag == OUTSIDE:
        return None
    prefix, dash, name = tag.partition("-")
    if prefix in ("B", "I") and dash and name:
        return None
    return f"tag {tag!r} is not O, B-TYPE or I-TYPE"


def load_label2id(path) -> dict[str, int]:
    """``task.label2id_path``: a JSON object of BIO tags to the ids 0..n-1."""
    option = f"task.label2id_path={path}"
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "not found"
        raise UerError(f"{option}: {what}; give a JSON file such as {{\"O\": 0, \"B-LOC\": 1, \"I-LOC\": 2}}, "
                       "or task.label2id_path=null to collect the tags from finetune.train_path")
    try:
        mapping = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UerError(f"{option}: not valid UTF-8; save the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise UerError(f"{where(path, err.lineno)}: not valid JSON ({err.msg}, column {err.colno}); "
                       f"task.label2id_path must hold an object such as {{\"O\": 0, \"B-LOC\": 1}}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise UerError(f"{option}: holds a JSON {type(mapping).__name__}, not a non-empty object of tags to ids; "
                       "write it as {\"O\": 0, \"B-LOC\": 1, ...}")
    for tag, index in mapping.items():
        problem = _tag_problem(tag)
        if problem:
            raise UerError(f"{option}: key {problem}; NER tags are BIO tags, e.g. O, B-LOC, I-LOC")
        if not isinstance(index, int) or isinstance(index, bool):
            raise UerError(f"{option}: key {tag!r} maps to {index!r}, not an integer id; ids are 0, 1, 2, ...")
    ids = sorted(mapping.values())
    if ids != list(range(len(ids))):
        raise UerError(f"{option}: the ids are {ids}, not each of 0..{len(ids) - 1} once; "
                       "number the tags 0, 1, 2, ... without gaps or repeats")
    return dict(mapping)


def collected_label2id(tags) -> dict[str, int]:
    """Tags seen in training, sorted with ``O`` first (always present) -> ids."""
    ordered = [OUTSIDE, *sorted(set(tags) - {OUTSIDE})]
    return {tag: index for index, tag in enumerate(ordered)}


def _units(text: str) -> list[str]:
    return [unit for unit in text.split(" ") if unit]


# CJK ideographs (the unified blocks and their extension A, and the compatibility block).
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def unsegmented_unit(units: list[str]) -> str | None:
    """The first unit holding two or more CJK characters: Chinese text given unsplit, which the model
    would see as one [UNK] unit and tag as one (the units of Chinese NER are characters)."""
    return next((unit for unit in units if len(_CJK.findall(unit)) >= 2), None)


def _short(unit: str, limit: int = 12) -> str:
    return unit if len(unit) <= limit else unit[:limit] + "…"


# --------------------------------------------------------------------------- model

class NerModel(nn.Module):
    """Tag scores on every token; with ``crf`` a :class:`~uer.models.crf.Crf` over them (trained on the
    sentence's log-likelihood, decoded with Viterbi) instead of a softmax per token."""

    def __init__(self, backbone: nn.Module, labels_num: int, crf: bool = False):
        super().__init__()
        self.backbone = backbone
        self.labels_num = labels_num
        self.output_layer = nn.Linear(backbone.hidden_size, labels_num)
        self.output_layer.apply(init_bert_weights)
        self.crf = Crf(labels_num) if crf else None

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L, labels_num)."""
        return self.output_layer(self.backbone(batch["src"], batch["seg"]))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tag ids (B, L); position 0 is [CLS], padding positions are meaningless."""
        logits = self.logits(batch)
        if self.crf is None:
            return logits.argmax(dim=-1)
        tags = self.crf.decode(logits[:, 1:].float(), batch["seg"][:, 1:] != 0)
        return nn.functional.pad(tags, (1, 0))  # position 0, [CLS], is not tagged

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        logits = self.logits(batch)
        if self.crf is None:
            keep = batch["label"] != IGNORE
            loss, stats = classification_loss(logits[keep], batch["label"][keep], "ner")
            return ModelOutput(loss, stats)
        return ModelOutput(*self.crf_loss(logits[:, 1:].float(), batch["label"][:, 1:]))

    def crf_loss(self, emissions: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The sentences' negative log-likelihood summed and divided by their characters (so the loss is on
        the scale of the softmax's per-character cross-entropy and the same learning rate suits both), and
        ``ner_loss``/``ner_acc`` stats, the accuracy of the Viterbi paths."""
        mask = labels != IGNORE
        nll = self.crf.nll(emissions, labels, mask).sum()
        count = mask.sum().float()
        with torch.no_grad():
            right = (self.crf.decode(emissions, mask) == labels)[mask].sum().float()
        stats = {"ner_loss": (nll.detach(), count), "ner_acc": (right, count)}
        return nll / count.clamp(min=1), stats


@dataclass
class NerExample:
    src: list[int]  # [CLS] + the first seq_length - 1 units
    label: list[int]  # IGNORE, then the ids of those units' tags (all IGNORE when unlabelled)
    tags: list[str]  # every gold tag of the row, also beyond seq_length ([] when unlabelled)
    length: int  # units in the row
    line: int


@dataclass
class NerConfig(TaskConfig):
    """``task=ner``: BIO sequence labelling."""

    label2id_path: Optional[str] = setting(None, 'JSON {"O": 0, "B-LOC": 1, ...}; null = tags collected from '
                                                 "finetune.train_path")
    crf: bool = setting(False, "a CRF over the tag scores: trained on whole sentences' log-likelihood, decoded "
                               "with Viterbi (false: a softmax per character)")


@TASKS.register("ner", config=NerConfig)
class NerTask(Task):
    roles = ("cls", "unk")  # [CLS] then each character looked up in the vocabulary
    name = "ner"
    metrics = ("f1", "precision", "recall", "token_acc")

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        if seq_length < 2:
            raise UerError(f"seq_length={seq_length} leaves no room for characters after [CLS]; use at least 2")
        if "label2id" not in self.info and cfg.label2id_path:
            self.info["label2id"] = load_label2id(cfg.label2id_path)

    @property
    def label2id(self) -> dict[str, int] | None:
        return self.info.get("label2id")

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled = split != "infer"
        bad = BadRows(path, skip_bad_rows and labelled, "finetune.skip_bad_rows=true" if labelled else None)
        table = read_tsv(path, required=("text_a", "label") if labelled else ("text_a",), bad=bad,
                         example="text_a<TAB>label" if labelled else "text_a")
        text_at = table.index("text_a")
        label_at = table.index("label") if labelled else None
        collect = labelled and self.label2id is None
        if collect and split != "train":
            raise UerError(f"{where(path)}: no tag set is known yet; read finetune.train_path first "
                           "or set task.label2id_path")
        rows = []
        warned = False
        for line, fields in table.rows:
            units = _units(fields[text_at])
            if not warned and (unit := unsegmented_unit(units)) is not None:
                warned = True
                log.warning("%s: text_a holds %r, %d characters as one unit (the first such row): each unit gets one "
                            "vocabulary id and one tag, so it is [UNK] tagged as a whole; split the text into "
                            "space-separated characters as the training file is, e.g. %r", where(path, line),
                            _short(unit), len(unit), " ".join(_short(unit)))
            tags: list[str] = []
            if labelled:
                tags = self._tags(fields[label_at], units, line, collect, bad)
                if tags is None:
                    continue
            rows.append((line, units, tags))
        bad.summary()
        if not rows:
            raise UerError(f"{where(path)}: no usable rows; the file must hold a header row and at least one example")
        if collect:
            self.info["label2id"] = collected_label2id(tag for _, _, tags in rows for tag in tags)
            log.info("%s: collected %d tags: %s", path, len(self.label2id), " ".join(self.label2id))
        self._check_labels_num(labels_num)
        return TaskData(str(path), [self._example(line, units, tags) for line, units, tags in rows],
                        skipped=bad.count)

    def _tags(self, text: str, units: list[str], line: int, collect: bool, bad: BadRows) -> list[str] | None:
        tags = _units(text)
        if not units:
            bad.bad(line, "text_a holds no characters", "give every row at least one character")
            return None
        if len(tags) != len(units):
            bad.bad(line, f"{len(tags)} tags for {len(units)} characters",
                    "give one space-separated tag per space-separated character")
            return None
        for tag in tags:
            problem = _tag_problem(tag) if collect else (
                None if tag in self.label2id else
                f"tag {tag!r} is not in the tag set ({', '.join(self.label2id)})")
            if problem:
                fix = ("NER tags are BIO tags, e.g. O, B-LOC, I-LOC" if collect else
                       "add it to task.label2id_path" if self.cfg.label2id_path else
                       "tags are collected from finetune.train_path, so this one must occur there "
                       "(or give all tags in task.label2id_path)")
                bad.bad(line, problem, fix)
                return None
        return tags

    def _check_labels_num(self, labels_num: int | None) -> None:
        if labels_num is not None and self.label2id is not None and labels_num != len(self.label2id):
            raise UerError(f"task.labels_num={labels_num} but the tag set has {len(self.label2id)} tags "
                           f"({', '.join(self.label2id)}); set task.labels_num=null")

    def _example(self, line: int, units: list[str], tags: list[str]) -> NerExample:
        vocab = self.tokenizer.vocab
        lower = getattr(self.tokenizer, "lowercases", False)
        kept = units[:self.seq_length - 1]
        src = [vocab.cls_id]
        for unit in kept:
            index = vocab.token_to_id(unit)
            if index == vocab.unk_id and lower and unit.lower() != unit:
                index = vocab.token_to_id(unit.lower())
            src.append(index)
        if tags:
            label = [IGNORE, *(self.label2id[tag] for tag in tags[:len(kept)])]
        else:
            label = [IGNORE] * len(src)
        return NerExample(src, label, tags, len(units), line)

    def labels_num_from(self, train: TaskData) -> int:
        return len(self.label2id)

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return NerModel(backbone, labels_num, crf=self.cfg.crf)

    def collate(self, examples: list[NerExample]) -> dict[str, torch.Tensor]:
        width = max(len(example.src) for example in examples)
        src = torch.full((len(examples), width), self.tokenizer.vocab.pad_id, dtype=torch.long)
        seg = torch.zeros((len(examples), width), dtype=torch.long)
        label = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for row, example in enumerate(examples):
            src[row, :len(example.src)] = torch.tensor(example.src)
            seg[row, :len(example.src)] = 1
            label[row, :len(example.label)] = torch.tensor(example.label)
        return {"src": src, "seg": seg, "label": label}

    def predicted_tags(self, outputs: list[torch.Tensor], data: TaskData) -> list[list[str]]:
        """Per example, one tag per unit of the row: the model's for the first ``seq_length - 1``, ``O`` after."""
        id2label = {index: tag for tag, index in self.label2id.items()}
        result = []
        examples = iter(data.examples)
        for batch in outputs:
            for row in batch.long().tolist():
                example = next(examples)
                seen = len(example.src) - 1
                tags = [id2label.get(index, OUTSIDE) for index in row[1:1 + seen]]
                result.append(tags + [OUTSIDE] * (example.length - seen))
        return result

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        pred = self.predicted_tags(outputs, data)
        gold = [example.tags for example in data.examples]
        scores = entity_scores(gold, pred)
        return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
                "token_acc": tag_accuracy(gold, pred)}

    def report(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict:
        """Precision, recall and F1 of each entity type."""
        return entity_report([example.tags for example in data.examples], self.predicted_tags(outputs, data))

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        """A ``label`` column: per input row, its tags space-separated, one per input character.

        Characters beyond ``seq_length - 1`` (the model never saw them) get ``O``.  A row
        with no characters gets an empty line.  ``infer.output_logits``/``output_prob`` do
        not apply to NER and are ignored (with a warning).
        """
        if output_logits or output_prob:
            log.warning("ner writes tags only; infer.output_logits and infer.output_prob are ignored")
        lines = ["label", *(" ".join(tags) for tags in self.predicted_tags(outputs, data))]
        atomic_write_text(path, "\n".join(lines) + "\n")
