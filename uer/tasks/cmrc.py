"""Span-extraction reading comprehension (CMRC 2018; the original toolkit's ``run_cmrc.py``).

Files are SQuAD-style JSON: ``{"data": [{"paragraphs": [{"context": ..., "qas": [{"id": ...,
"question": ..., "answers": [{"text": ..., "answer_start": ...}]}]}]}]}``.  ``answers`` is
needed in labelled files (train/dev/test); ``answer_start`` (a character offset into the
context) only in the training file, where a start that does not point at the text is
moved to the nearest place the text occurs.  Training uses each question's first answer;
scores take the best over all of them.

Inputs are ``[CLS] question [SEP] window [SEP]`` (segment 1, then 2).  The question is
cut to ``(seq_length - 3) // 2`` tokens; a context too long for the rest is split into
overlapping windows that advance ``task.doc_stride`` tokens (at most one window length,
so no text is skipped).  Every window is one example, so a batch may hold windows of
several questions; ``TaskData.info["questions"]`` lists the questions and each window
names its question by index there.  A training window that does not contain the whole
answer points both start and end at ``[CLS]`` (position 0).

The context is tokenized piecewise so every token knows the characters it came from:
it is cut at whitespace, CJK characters and punctuation (so ``ω-force`` is three pieces
and ``1963年`` two), and each piece goes through the tokenizer alone -- for the BERT and
char tokenizers this gives exactly the tokens of the whole text.  WordPiece parts of one
piece get their own characters when their lengths add up to the piece's; otherwise (an
``[UNK]``, lowercasing that changes lengths, SentencePiece's ``▁``) they all stand for the
whole piece.  A predicted answer is the original context from its first token's first
character to its last token's last character, so it is never a lowercased or
``[UNK]`` form.

The head is UER's: ``output_layer`` (H -> 2) gives start and end logits per token;
the loss is the mean of the start and end cross-entropies.  Decoding takes, over all
windows of a question, the span in the context part with ``start <= end``, at most
``task.max_answer_length`` tokens long, that maximises start + end logit.  Scores
(:mod:`uer.tasks.mrc_metrics`), as fractions: ``f1`` and ``em`` of the official CMRC 2018
evaluation, and ``f1_char``, the original toolkit's per-character F1.
Predictions are a JSON object ``{question id: answer text}``.

:class:`BadItems`, :func:`load_json` and :func:`write_json` serve the other JSON tasks too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uer.config.fields import at_least, setting
from uer.errors import UerError, where
from uer.io.atomic import atomic_write
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.mrc_metrics import mrc_scores
from uer.tasks.tsv import SHOWN_SKIPS
from uer.tokenizers.bert import _is_cjk, _is_punctuation

log = logging.getLogger("uer.tasks")

SKIP_OPTION = "finetune.skip_bad_rows=true"
SQUAD_SHAPE = ('{"data": [{"paragraphs": [{"context": "...", "qas": [{"id": "...", "question": "...", '
               '"answers": [{"text": "...", "answer_start": 0}]}]}]}]}')


# --------------------------------------------------------------------------- JSON files

class BadItems:
    """Like :class:`uer.tasks.tsv.BadRows`, for JSON files: items are named by key path, not line."""

    def __init__(self, path, skip: bool, what: str = "question", skip_option: str | None = SKIP_OPTION):
        self.path = str(path)
        self.skip = skip
        self.what = what
        self.skip_option = skip_option
        self.count = 0

    def bad(self, key: str, problem: str, fix: str) -> None:
        if not self.skip:
            alternative = f", or pass {self.skip_option} to skip such {self.what}s" if self.skip_option else ""
            raise UerError(f"{self.path}: {key}: {problem}; {fix}{alternative}")
        self.count += 1
        if self.count <= SHOWN_SKIPS:
            log.warning("%s: %s: skipped: %s", self.path, key, problem)

    def summary(self) -> None:
        if self.count:
            log.warning("%s: skipped %d bad %s%s", self.path, self.count, self.what, "" if self.count == 1 else "s")


def load_json(path, shape: str):
    """The parsed file; a missing file, bad UTF-8 or bad JSON is a UerError naming ``file:line:column``."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UerError(f"data file {path} {what}; check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UerError(f"{where(path, line)}: not valid UTF-8; save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UerError(f"{where(path, err.lineno)}:{err.colno}: not valid JSON ({err.msg}); "
                       f"fix the file there; it must be one JSON document shaped {shape}") from None


def write_json(path, value: list | dict) -> None:
    """Write a list or object as UTF-8 JSON, one entry per line, atomically (a failed write leaves no file)."""
    def dump(item):
        return json.dumps(item, ensure_ascii=False)

    if isinstance(value, dict):
        entries, brackets = [f"{dump(str(key))}: {dump(item)}" for key, item in value.items()], "{}"
    else:
        entries, brackets = [dump(item) for item in value], "[]"
    text = brackets[0] + "\n" + ",\n".join(entries) + "\n" + brackets[1] + "\n"
    atomic_write(path, lambda handle: handle.write(text))


# --------------------------------------------------------------------------- tokens -> characters

def split_pieces(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character ranges: whitespace separates, CJK characters and punctuation stand alone."""
    pieces = []
    run = None
    for i, char in enumerate(text):
        if char.isspace():
            if run is not None:
                pieces.append((run, i))
                run = None
        elif _is_cjk(ord(char)) or _is_punctuation(char):
            if run is not None:
                pieces.append((run, i))
                run = None
            pieces.append((i, i + 1))
        elif run is None:
            run = i
    if run is not None:
        pieces.append((run, len(text)))
    return pieces


def tokenize_with_offsets(tokenizer, text: str, cache: dict | None = None) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and, for each, the ``(start, end)`` characters of ``text`` it stands for.

    A fast tokenizer (tokenizer=hf) tokenizes the whole text and knows its offsets: split into pieces
    first, a byte-level BPE or Unigram one would give other ids (a word after a space is another token)."""
    if tokenizer.kind == "hf":
        return tokenizer.encode_with_offsets(text)
    cache = {} if cache is None else cache
    unk = tokenizer.vocab.unk_token
    ids, spans = [], []
    for start, end in split_pieces(text):
        piece = text[start:end]
        known = cache.get(piece)
        if known is None:
            tokens = tokenizer.tokenize(piece)
            lengths = [len(t[2:]) if t.startswith("##") else len(t) for t in tokens]
            if tokens and unk not in tokens and sum(lengths) == len(piece):
                offsets, at = [], 0
                for length in lengths:
                    offsets.append((at, at + length))
                    at += length
            else:
                offsets = [(0, len(piece))] * len(tokens)
            known = cache[piece] = (tokenizer.convert_tokens_to_ids(tokens), offsets)
        token_ids, offsets = known
        ids.extend(token_ids)
        spans.extend((start + a, start + b) for a, b in offsets)
    return ids, spans


def token_range(spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """First and last token overlapping characters ``[start, end)``; None when none does."""
    inside = [i for i, (a, b) in enumerate(spans) if a < end and b > start]
    return (inside[0], inside[-1]) if inside else None


# --------------------------------------------------------------------------- model

def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, ctx_start: torch.Tensor,
               ctx_end: torch.Tensor, max_answer_length: int) -> torch.Tensor:
    """(B, 3): start, end (positions in ``[ctx_start, ctx_end)``, ``start <= end < start + max_answer_length``)
    and score (start + end logit) of each row's best span."""
    batch, length = start_logits.shape
    pos = torch.arange(length, device=start_logits.device)
    inside = (pos >= ctx_start[:, None]) & (pos < ctx_end[:, None])  # (B, L)
    offset = pos[None, :] - pos[:, None]  # [i, j] = j - i
    band = (offset >= 0) & (offset < max_answer_length)  # (L, L)
    allowed = band[None] & inside[:, :, None] & inside[:, None, :]
    scores = (start_logits.float()[:, :, None] + end_logits.float()[:, None, :]).masked_fill(~allowed, float("-inf"))
    score, index = scores.reshape(batch, -1).max(dim=-1)
    return torch.stack([(index // length).float(), (index % length).float(), score], dim=-1)


class SpanModel(nn.Module):
    def __init__(self, backbone: nn.Module, max_answer_length: int):
        super().__init__()
        self.backbone = backbone
        self.max_answer_length = max_answer_length
        self.output_layer = nn.Linear(backbone.hidden_size, 2)
        self.output_layer.apply(init_bert_weights)

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits (B, L), fp32."""
        logits = self.output_layer(self.backbone(batch["src"], batch["seg"])).float()
        return logits[..., 0], logits[..., 1]

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3): best start and end position in each window, and their score."""
        start, end = self.logits(batch)
        return best_spans(start, end, batch["ctx_start"], batch["ctx_end"], self.max_answer_length)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        start, end = self.logits(batch)
        padding = batch["seg"] == 0
        start, end = start.masked_fill(padding, -1e4), end.masked_fill(padding, -1e4)
        gold_start, gold_end = batch["start"], batch["end"]
        per_example = (F.cross_entropy(start, gold_start, reduction="none")
                       + F.cross_entropy(end, gold_end, reduction="none")) / 2
        correct = ((start.argmax(dim=-1) == gold_start) & (end.argmax(dim=-1) == gold_end)).sum().float()
        count = torch.full((), float(gold_start.numel()), device=start.device)
        stats = {"cmrc_loss": (per_example.sum().detach(), count), "cmrc_acc": (correct.detach(), count)}
        return ModelOutput(per_example.mean(), stats)


# --------------------------------------------------------------------------- task

@dataclass
class Question:
    id: str
    context: str
    spans: list  # (start, end) characters of each context token; shared by a paragraph's questions
    answers: list[str]  # gold texts ([] when unlabelled)


@dataclass
class Window:
    src: list[int]
    seg: list[int]
    start: int  # gold start/end positions in src (0 = [CLS]: no answer here, or unlabelled)
    end: int
    question: int  # index into TaskData.info["questions"]
    offset: int  # position in src of the window's first context token
    first: int  # index of that token among the context's tokens


@dataclass
class CmrcConfig(TaskConfig):
    """``task=cmrc``: span-extraction reading comprehension."""

    doc_stride: int = setting(128, "tokens between the starts of overlapping windows over a long context",
                              bounds=at_least(1))
    max_answer_length: int = setting(30, "longest answer considered when decoding, in tokens", bounds=at_least(1))


@TASKS.register("cmrc", config=CmrcConfig)
class CmrcTask(Task):
    roles = ("cls", "sep", "unk")
    name = "cmrc"
    metrics = ("f1", "em", "f1_char")

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        if seq_length < 8:
            raise UerError(f"seq_length={seq_length} is too short for [CLS] question [SEP] context [SEP]; "
                           "use at least 8 (CMRC 2018 models use 512)")
        for key in ("doc_stride", "max_answer_length"):
            if getattr(cfg, key) < 1:
                raise UerError(f"task.{key}={getattr(cfg, key)} must be at least 1")

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled, train = split != "infer", split == "train"
        bad = BadItems(path, skip_bad_rows and labelled, skip_option=SKIP_OPTION if labelled else None)
        doc = load_json(path, SQUAD_SHAPE)
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise UerError(f"{path}: the top level has no \"data\" list; a SQuAD-style file is shaped {SQUAD_SHAPE}")
        questions: list[Question] = []
        windows: list[Window] = []
        seen: dict[str, str] = {}
        cache: dict = {}
        for a, article in enumerate(doc["data"]):
            key = f"data[{a}]"
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                bad.bad(key, 'no "paragraphs" list', 'each item of "data" must be {"paragraphs": [...]}')
                continue
            for p, paragraph in enumerate(paragraphs):
                pkey = f"{key}.paragraphs[{p}]"
                if not isinstance(paragraph, dict):
                    bad.bad(pkey, "not an object", 'each paragraph must be {"context": ..., "qas": [...]}')
                    continue
                context, qas = paragraph.get("context"), paragraph.get("qas")
                if not isinstance(context, str):
                    bad.bad(pkey, 'no "context" text', 'give the paragraph a "context" string')
                    continue
                if not isinstance(qas, list):
                    bad.bad(pkey, 'no "qas" list', 'give the paragraph a "qas" list of questions')
                    continue
                ids, spans = tokenize_with_offsets(self.tokenizer, context, cache)
                if not ids:
                    bad.bad(pkey, "the context has no tokens", "give the paragraph a non-empty context")
                    continue
                for q, qa in enumerate(qas):
                    question = self._question(qa, f"{pkey}.qas[{q}]", context, spans, seen, labelled, train, bad)
                    if question is None:
                        continue
                    question_obj, text, answer_tokens = question
                    questions.append(question_obj)
                    windows.extend(self._windows(len(questions) - 1, text, ids, answer_tokens))
        bad.summary()
        if not questions:
            raise UerError(f"{path}: no usable questions; the file must be shaped {SQUAD_SHAPE}")
        return TaskData(str(path), windows, skipped=bad.count, info={"questions": questions})

    def _question(self, qa, key, context, spans, seen, labelled, train, bad):
        """``(Question, question text, gold token range or None)``, or None for a skipped question."""
        if not isinstance(qa, dict):
            bad.bad(key, "not an object", 'each question must be {"id": ..., "question": ..., "answers": [...]}')
            return None
        qid = qa.get("id")
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            bad.bad(key, 'no "id"', 'give every question an "id" (predictions are keyed by it)')
            return None
        qid = str(qid)
        key = f"{key} (id {qid})"
        if qid in seen:
            bad.bad(key, f"the id repeats that of {seen[qid]}", "give every question its own id")
            return None
        text = qa.get("question")
        if not isinstance(text, str) or not text.strip():
            bad.bad(key, 'no "question" text', 'give the question a non-empty "question" string')
            return None
        answers, answer_tokens = [], None
        if labelled:
            raw = qa.get("answers")
            if not isinstance(raw, list) or not raw:
                bad.bad(key, 'no "answers" list', 'give the question "answers": [{"text": ..., "answer_start": ...}] '
                        "(an unlabelled file goes to stage=infer)")
                return None
            for n, answer in enumerate(raw):
                if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) \
                        or not answer["text"].strip():
                    bad.bad(f"{key}.answers[{n}]", 'no "text"', 'give every answer a non-empty "text"')
                    return None
                answers.append(answer["text"])
            if train:
                answer_tokens = self._locate(raw[0], f"{key}.answers[0]", context, spans, bad)
                if answer_tokens is None:
                    return None
        seen[qid] = key
        return Question(qid, context, spans, answers), text, answer_tokens

    @staticmethod
    def _locate(answer: dict, key, context: str, spans, bad) -> tuple[int, int] | None:
        """The answer's first and last context token, from ``answer_start`` (or the nearest occurrence)."""
        text, start = answer["text"], answer.get("answer_start")
        if not isinstance(start, int) or isinstance(start, bool):
            bad.bad(key, 'no integer "answer_start"', 'give the answer its character offset in the context as '
                    '"answer_start" (the training file needs it)')
            return None
        if start < 0 or context[start:start + len(text)] != text:
            found = [i for i in range(len(context)) if context.startswith(text, i)]
            if not found:
                bad.bad(key, f"the answer text {text!r} does not occur in the context",
                        "fix the answer text so it is copied from the context")
                return None
            start = min(found, key=lambda i: abs(i - start))
        tokens = token_range(spans, start, start + len(text))
        if tokens is None:
            bad.bad(key, f"the answer text {text!r} has no tokens", "give an answer with visible characters")
        return tokens

    def _windows(self, question: int, text: str, ids: list[int], answer: tuple[int, int] | None) -> list[Window]:
        vocab = self.tokenizer.vocab
        query = self.tokenizer.encode(text)[:(self.seq_length - 3) // 2]
        offset = len(query) + 2
        room = self.seq_length - offset - 1
        stride = min(int(self.cfg.doc_stride), room)
        out, first = [], 0
        while True:
            part = ids[first:first + room]
            src = [vocab.cls_id, *query, vocab.sep_id, *part, vocab.sep_id]
            seg = [1] * offset + [2] * (len(part) + 1)
            start = end = 0
            if answer is not None and first <= answer[0] and answer[1] < first + len(part):
                start, end = answer[0] - first + offset, answer[1] - first + offset
            out.append(Window(src, seg, start, end, question, offset, first))
            if first + room >= len(ids):
                return out
            first += stride

    def labels_num_from(self, train: TaskData) -> int:
        return 2

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return SpanModel(backbone, int(self.cfg.max_answer_length))

    def collate(self, examples: list[Window]) -> dict[str, torch.Tensor]:
        width = max(len(example.src) for example in examples)
        src = torch.full((len(examples), width), self.tokenizer.vocab.pad_id, dtype=torch.long)
        seg = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            src[row, :len(example.src)] = torch.tensor(example.src)
            seg[row, :len(example.seg)] = torch.tensor(example.seg)

        def column(values):
            return torch.tensor(values, dtype=torch.long)

        return {"src": src, "seg": seg, "start": column([e.start for e in examples]),
                "end": column([e.end for e in examples]), "ctx_start": column([e.offset for e in examples]),
                "ctx_end": column([len(e.src) - 1 for e in examples])}

    def answers(self, outputs: list[torch.Tensor], data: TaskData) -> list[str]:
        """The predicted text of every question, in ``info["questions"]`` order."""
        questions: list[Question] = data.info["questions"]
        rows = torch.cat(outputs).tolist() if outputs else []
        if len(rows) != len(data.examples):
            raise ValueError(f"{len(rows)} outputs for {len(data.examples)} windows")
        best: dict[int, tuple[float, int, int]] = {}
        for window, (start, end, score) in zip(data.examples, rows):
            question = questions[window.question]
            first = int(start) - window.offset + window.first
            last = int(end) - window.offset + window.first
            span = (score, question.spans[first][0], question.spans[last][1])
            if window.question not in best or score > best[window.question][0]:
                best[window.question] = span
        return [q.context[best[i][1]:best[i][2]] for i, q in enumerate(questions)]

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        predictions = self.answers(outputs, data)
        return mrc_scores(predictions, [q.answers for q in data.info["questions"]])

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        """``{question id: answer}`` (infer.output_logits/output_prob do not apply)."""
        predictions = self.answers(outputs, data)
        write_json(path, {q.id: text for q, text in zip(data.info["questions"], predictions)})
