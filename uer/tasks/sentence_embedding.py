"""Sentence embeddings: ``task=siamese`` and ``task=simcse``, scored on a semantic textual
similarity (STS) file by Spearman's rank correlation.

The model is the backbone alone: a sentence is ``[CLS] text [SEP]``, its embedding the
last layer pooled by ``task.pooling`` (:mod:`uer.models.sentence`, which
``tool=extract_feature`` uses too, so the tool on a fine-tuned checkpoint with the same
``tool.pooling`` gives the embeddings ``stage=infer`` writes).  No head is trained on top:
what training shapes is the embedding itself.

STS files (dev/test of both tasks, training of ``siamese``): TSV with a header naming
``text_a``, ``text_b`` and ``label``, the label a similarity score (any real number, e.g.
STS-B's 0..5).  A pair is scored by the cosine of its two embeddings; ``spearman`` (which
picks the best model) and ``pearson`` correlate those cosines with the gold scores.

* ``task=siamese`` trains on the STS file itself: the loss is the squared difference between
  the cosine and the gold score divided by ``task.max_score`` (so 0..5 becomes 0..1), as
  sentence-transformers' CosineSimilarityLoss.  Chosen over a classifier on
  ``(u, v, |u - v|)``: it needs graded scores, not NLI labels, trains exactly the quantity
  scored, and leaves no head that inference would drop.
* ``task=simcse`` (contrastive, in-batch negatives, cosines divided by ``task.temperature``):
  unsupervised (``task.supervised=false``), the training file holds sentences, one a line
  (or a TSV whose header names ``text_a``); each batch goes through the encoder twice, so
  dropout makes the two views of a sentence differ, and each view must pick its twin among
  the batch's other sentences.  Supervised (``task.supervised=true``): a TSV of positive
  pairs ``text_a``, ``text_b``, optionally a ``hard_negative`` column; ``text_a`` must pick
  its ``text_b`` among every ``text_b`` (and hard negative) of the batch.  Batches need at
  least two rows to hold a negative; with several processes each draws its negatives from
  its own batch (``finetune.batch_size`` is per process).

``stage=infer`` files need ``text_a``; with ``text_b`` too, the output is one ``score``
(the pair's cosine) per row, else one ``embedding`` (space-separated numbers) per row.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from uer.config.fields import at_least, setting
from uer.errors import UerError, where
from uer.models.model import ModelOutput
from uer.models.pooling import check_pooling
from uer.models.sentence import embed, pad_batch, sentence_ids
from uer.models.targets import classification_loss
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.classifier import write_table
from uer.tasks.tsv import BadRows, read_tsv

log = logging.getLogger("uer.tasks")

STS_HEADER = "text_a<TAB>text_b<TAB>label"
HARD_NEGATIVE = "hard_negative"


def sts_correlations(pred, gold) -> dict[str, float]:
    """``spearman`` and ``pearson`` correlation of predicted similarities with gold scores.

    Constant predictions carry no ranking: both are 0 then (rather than undefined).
    """
    from scipy import stats  # lazy: scipy.stats takes most of a second to import; only scoring needs it

    pred = [float(x) for x in pred]
    gold = [float(x) for x in gold]
    if len(set(pred)) < 2:
        return {"spearman": 0.0, "pearson": 0.0}
    return {"spearman": float(stats.spearmanr(pred, gold).statistic),
            "pearson": float(stats.pearsonr(pred, gold).statistic)}


@dataclass
class SentenceExample:
    texts: list[list[int]]  # the row's sentences as ids: one, a pair, or a pair and its hard negative
    label: float  # the gold similarity; nan where there is none
    line: int


class SentenceEmbedder(nn.Module):
    """The backbone and its pooling.  A batch stacks the k sentences of its B rows as k blocks of B rows
    (``src`` is (k*B, L)); ``predict`` gives each row's embedding (k = 1) or its pair's cosine (k >= 2)."""

    def __init__(self, backbone: nn.Module, pooling: str):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling

    def embeddings(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(k, B, H) float32."""
        rows = embed(self.backbone, batch["src"], batch["seg"], self.pooling)
        return rows.view(-1, batch["label"].size(0), rows.size(-1))

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = self.embeddings(batch)
        if vectors.size(0) == 1:
            return vectors[0]
        return F.cosine_similarity(vectors[0], vectors[1], dim=-1).unsqueeze(-1)


class SiameseModel(SentenceEmbedder):
    """Trained on ``(cos(u, v) - label / max_score)^2``."""

    def __init__(self, backbone: nn.Module, pooling: str, max_score: float):
        super().__init__(backbone, pooling)
        self.max_score = max_score

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        cosine = self.predict(batch)[:, 0]
        errors = (cosine - batch["label"].float() / self.max_score) ** 2
        count = torch.tensor(float(errors.numel()), device=errors.device)
        return ModelOutput(errors.mean(), {"mse": (errors.sum().detach(), count)})


class SimcseModel(SentenceEmbedder):
    """Each first sentence must pick its second among every other sentence of the batch (cross-entropy
    over cosines / temperature)."""

    def __init__(self, backbone: nn.Module, pooling: str, temperature: float):
        super().__init__(backbone, pooling)
        self.temperature = temperature

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        vectors = F.normalize(self.embeddings(batch), dim=-1)
        anchors, candidates = vectors[0], vectors[1:].flatten(0, 1)  # positives first, then hard negatives
        logits = anchors @ candidates.T / self.temperature
        targets = torch.arange(anchors.size(0), device=logits.device)
        loss, stats = classification_loss(logits, targets, "simcse")
        return ModelOutput(loss, stats)


POOLING_HELP = "how a sentence's hidden states become its embedding: mean | first ([CLS]) | max | last ([SEP])"


@dataclass
class SiameseConfig(TaskConfig):
    """``task=siamese``: a shared encoder trained so the cosine of a pair follows its score."""

    pooling: str = setting("mean", POOLING_HELP)
    max_score: float = setting(5.0, "the training file's highest similarity score: scores are divided by it to "
                                    "give the cosine's target (STS-B: 5)", bounds=at_least(1e-6))


@dataclass
class SimcseConfig(TaskConfig):
    """``task=simcse``: contrastive sentence embeddings with in-batch negatives."""

    pooling: str = setting("mean", POOLING_HELP)
    supervised: bool = setting(False, "false: the training file holds sentences (one a line, or a text_a column), "
                                      "each its own positive through dropout; true: a TSV of text_a, text_b "
                                      "positive pairs (and an optional hard_negative column)")
    temperature: float = setting(0.05, "cosines are divided by it before the softmax over the batch",
                                 bounds=at_least(1e-6))


class SentenceEmbeddingTask(Task):
    """What both tasks share: STS files for dev/test, the embedding model, correlations, predictions."""

    metrics = ("spearman", "pearson")

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        check_pooling(cfg.pooling, "task.pooling")
        if seq_length < 3:
            raise UerError(f"seq_length={seq_length} leaves no room for a token between [CLS] and [SEP]; use at "
                           "least 3")

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        if split == "infer":
            table = read_tsv(path, required=("text_a",), bad=BadRows(path, False, None),
                             example="text_a (or text_a<TAB>text_b)")
            columns = ("text_a", "text_b") if table.has("text_b") else ("text_a",)
            examples = [self.example(dict(zip(table.columns, fields)), columns, line, math.nan)
                        for line, fields in table.rows]
            return self.data(path, examples, 0)
        return self.read_sts(path, split, skip_bad_rows)

    def read_sts(self, path, split: str, skip_bad_rows: bool) -> TaskData:
        """A labelled STS file; dev and test need gold scores that differ, or no correlation is defined."""
        bad = BadRows(path, skip_bad_rows)
        table = read_tsv(path, required=("text_a", "text_b", "label"), bad=bad, example=STS_HEADER)
        examples = []
        for line, fields in table.rows:
            row = dict(zip(table.columns, fields))
            score = self.score(row["label"], line, split, bad)
            if score is not None:
                examples.append(self.example(row, ("text_a", "text_b"), line, score))
        bad.summary()
        data = self.data(path, examples, bad.count)
        if split != "train" and len({example.label for example in examples}) < 2:
            raise UerError(f"{where(path)}: every gold score is {examples[0].label}, so no correlation is defined; "
                           "give a dev/test file whose scores differ")
        return data

    def score(self, text: str, line: int, split: str, bad: BadRows) -> float | None:
        """The row's similarity score, or None if ``bad`` skipped it."""
        try:
            score = float(text)
        except ValueError:
            bad.bad(line, f"label {text!r} is not a number", "the label is the pair's similarity score, e.g. 3.8")
            return None
        if not math.isfinite(score):
            bad.bad(line, f"label {text!r} is not a finite number", "the label is the pair's similarity score")
            return None
        return score

    def example(self, row: dict[str, str], columns: tuple[str, ...], line: int, label: float) -> SentenceExample:
        return SentenceExample([sentence_ids(self.tokenizer, row[column], self.seq_length) for column in columns],
                               label, line)

    @staticmethod
    def data(path, examples: list, skipped: int) -> TaskData:
        if not examples:
            raise UerError(f"{where(path)}: no usable rows; give at least one example (under the header row of a TSV)")
        return TaskData(str(path), examples, skipped=skipped)

    def labels_num_from(self, train: TaskData) -> int:
        return 1  # one output per pair: its cosine

    def collate(self, examples: list[SentenceExample]) -> dict[str, torch.Tensor]:
        sentences = len(examples[0].texts)
        src, seg = pad_batch([example.texts[k] for k in range(sentences) for example in examples])
        return {"src": src, "seg": seg, "label": torch.tensor([example.label for example in examples])}

    def length(self, example: SentenceExample) -> int:
        return max(len(ids) for ids in example.texts)

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        return sts_correlations(torch.cat(outputs)[:, 0].tolist(), [example.label for example in data.examples])

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        """``score`` (the cosine) per pair, or ``embedding`` (space-separated) per sentence; no logits or
        probabilities exist here."""
        if output_logits or output_prob:
            log.warning("infer.output_logits/output_prob do not apply to task=%s; writing %s only", self.name,
                        "scores" if len(data.examples[0].texts) > 1 else "embeddings")
        rows = torch.cat(outputs)
        header = "score" if len(data.examples[0].texts) > 1 else "embedding"
        write_table(path, [header], [[" ".join(f"{x:.8g}" for x in row)] for row in rows.tolist()])


@TASKS.register("siamese", config=SiameseConfig)
class SiameseTask(SentenceEmbeddingTask):
    name = "siamese"

    def score(self, text: str, line: int, split: str, bad: BadRows) -> float | None:
        score = super().score(text, line, split, bad)
        limit = self.cfg.max_score
        if split == "train" and score is not None and abs(score) > limit:
            bad.bad(line, f"score {score:g} is outside [-{limit:g}, {limit:g}] (task.max_score={limit:g}), so its "
                          "cosine target would leave [-1, 1]", "set task.max_score to the file's highest score")
            return None
        return score

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return SiameseModel(backbone, self.cfg.pooling, float(self.cfg.max_score))


@TASKS.register("simcse", config=SimcseConfig)
class SimcseTask(SentenceEmbeddingTask):
    name = "simcse"

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        if split != "train":
            return super().read(path, split=split, labels_num=labels_num, skip_bad_rows=skip_bad_rows)
        if self.cfg.supervised:
            return self.read_pairs(path, skip_bad_rows)
        return self.read_sentences(path, skip_bad_rows)

    def read_pairs(self, path, skip_bad_rows: bool) -> TaskData:
        """Positive pairs ``text_a``, ``text_b`` (and their ``hard_negative``)."""
        bad = BadRows(path, skip_bad_rows)
        table = read_tsv(path, required=("text_a", "text_b"), bad=bad,
                         example=f"text_a<TAB>text_b (or text_a<TAB>text_b<TAB>{HARD_NEGATIVE})")
        columns = ("text_a", "text_b", HARD_NEGATIVE) if table.has(HARD_NEGATIVE) else ("text_a", "text_b")
        examples = [self.example(dict(zip(table.columns, fields)), columns, line, math.nan)
                    for line, fields in table.rows]
        bad.summary()
        return self.data(path, examples, bad.count)

    def read_sentences(self, path, skip_bad_rows: bool) -> TaskData:
        """Sentences, one a non-blank line, or the ``text_a`` column of a TSV whose header names one."""
        path = Path(path)
        if not path.is_file():
            raise UerError(f"data file {path} {'is a directory' if path.is_dir() else 'not found'}; check the path")
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline().removeprefix("\ufeff").rstrip("\r\n").split("\t")
        bad = BadRows(path, skip_bad_rows)
        if "text_a" in (name.strip() for name in header):
            table = read_tsv(path, required=("text_a",), bad=bad, example="text_a")
            sentences = [(line, fields[table.index("text_a")]) for line, fields in table.rows]
        else:
            sentences = self.lines(path, bad)
        bad.summary()
        examples = []
        for line, text in sentences:
            ids = sentence_ids(self.tokenizer, text, self.seq_length)
            examples.append(SentenceExample([ids, ids], math.nan, line))  # two views: the dropout differs
        return self.data(path, examples, bad.count)

    @staticmethod
    def lines(path: Path, bad: BadRows) -> list[tuple[int, str]]:
        """``(line number, text)`` of every non-blank line."""
        sentences = []
        for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            try:
                text = raw.decode("utf-8").removeprefix("\ufeff").strip()
            except UnicodeDecodeError:
                bad.bad(number, "not valid UTF-8", "save the file as UTF-8")
                continue
            if text:
                sentences.append((number, text))
        return sentences

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return SimcseModel(backbone, self.cfg.pooling, float(self.cfg.temperature))
