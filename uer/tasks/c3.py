"""Multiple-choice reading comprehension (C3; the original toolkit's ``run_c3.py``).

Files are the C3 JSON: a list of items ``[[dialogue sentences...], [{"question": ...,
"choice": [...], "answer": ...}, ...], id]`` (the id is optional; a question may carry
its own ``"id"``, as C3's test file does).  ``answer`` is needed in labelled files and
must be one of the question's choices, exactly.  One example per question.

Each choice becomes one input, in UER's order: ``[CLS] choice [SEP] question [SEP]
dialogue [SEP]``, segment 1 up to the second ``[SEP]`` and 2 after it; the dialogue's
sentences are joined by newlines.  Over ``seq_length`` the end of the dialogue is cut
first (then the question, then the choice).  A question with fewer than
``task.max_choices_num`` choices has empty slots: no input is built for them and their
logit is ``-inf``, so they are never predicted and cost nothing; more choices than
``task.max_choices_num`` is an error.

The head is UER's: ``output_layer`` (H -> 1) scores the pooled vector (``task.pooling``,
``first`` = ``[CLS]``) of each choice; a question's logits are its choices' scores
(B, max_choices_num), trained with cross-entropy.  The metric is accuracy.
Predictions are a JSON list, one object per question in file order:
``{"id": ..., "index": k, "answer": choice text}`` (plus ``logits``/``prob`` over the real
choices with ``infer.output_logits``/``infer.output_prob``); the id is the question's
``"id"``, else ``"<item id>-<question number>"``, else ``"<item index>-<question number>"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uer.config.fields import at_least, setting
from uer.errors import UerError
from uer.models.layers import init_bert_weights
from uer.models.model import ModelOutput
from uer.models.pooling import check_pooling, pool
from uer.models.targets import classification_loss
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.cmrc import SKIP_OPTION, BadItems, load_json, write_json
from uer.tasks.metrics import accuracy

ITEM_SHAPE = '[["dialogue sentence", ...], [{"question": "...", "choice": ["...", ...], "answer": "..."}], "id"]'
C3_SHAPE = f"[{ITEM_SHAPE}, ...]"


class MultipleChoiceModel(nn.Module):
    def __init__(self, backbone: nn.Module, choices_num: int, pooling: str):
        super().__init__()
        self.backbone = backbone
        self.choices_num = choices_num
        self.pooling = pooling
        self.output_layer = nn.Linear(backbone.hidden_size, 1)
        self.output_layer.apply(init_bert_weights)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (B, choices_num), fp32; ``-inf`` for empty choice slots.

        ``src``/``seg`` hold the real choices only (N, L); ``slot`` places each at
        ``question * choices_num + choice``.
        """
        hidden = self.backbone(batch["src"], batch["seg"])
        scores = self.output_layer(pool(hidden, batch["seg"], self.pooling)).squeeze(-1).float()
        questions = batch["label"].size(0)
        empty = torch.full((questions * self.choices_num,), float("-inf"), device=scores.device)
        return empty.index_put((batch["slot"],), scores).view(questions, self.choices_num)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        loss, stats = classification_loss(self.predict(batch), batch["label"], "c3")
        return ModelOutput(loss, stats)


@dataclass
class ChoiceExample:
    src: list[list[int]]  # one input per real choice
    seg: list[list[int]]
    label: int  # -1 when unlabelled
    id: object
    choices: list[str]


@dataclass
class C3Config(TaskConfig):
    """``task=c3``: multiple-choice reading comprehension."""

    max_choices_num: int = setting(4, "choices per question (fewer are padded; more is an error)", bounds=at_least(1))
    pooling: str = setting("first", "the vector scored for each choice: first ([CLS]) | mean | max | last")


@TASKS.register("c3", config=C3Config)
class C3Task(Task):
    roles = ("cls", "sep")
    name = "c3"
    metrics = ("acc",)

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        self.choices_num = int(cfg.max_choices_num)
        if self.choices_num < 2:
            raise UerError(f"task.max_choices_num={cfg.max_choices_num} must be at least 2")
        self.pooling = cfg.pooling
        check_pooling(self.pooling, "task.pooling")
        if seq_length < 4:
            raise UerError(f"seq_length={seq_length} leaves no room for [CLS] choice [SEP] question [SEP] "
                           "dialogue [SEP]; use at least 4 (C3 models use 512)")

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled = split != "infer"
        bad = BadItems(path, skip_bad_rows and labelled, skip_option=SKIP_OPTION if labelled else None)
        doc = load_json(path, C3_SHAPE)
        if not isinstance(doc, list):
            raise UerError(f"{path}: the top level is not a list; a C3 file is shaped {C3_SHAPE}")
        examples = []
        for i, item in enumerate(doc):
            key = f"item {i}"
            if not isinstance(item, list) or len(item) < 2:
                bad.bad(key, "not a [dialogue, questions, id] list", f"items are shaped {ITEM_SHAPE}")
                continue
            dialogue, questions = item[0], item[1]
            item_id = item[2] if len(item) > 2 and isinstance(item[2], (str, int)) else None
            if item_id is not None:
                key = f"item {i} (id {item_id})"
            if not isinstance(dialogue, list) or not all(isinstance(s, str) for s in dialogue):
                bad.bad(key, "the first element is not a list of dialogue sentences",
                        'start the item with its dialogue: ["sentence", ...]')
                continue
            if not isinstance(questions, list):
                bad.bad(key, "the second element is not a list of questions",
                        'give the item [{"question": ..., "choice": [...], "answer": ...}] second')
                continue
            dialogue_ids = self.tokenizer.encode("\n".join(dialogue))
            for j, qa in enumerate(questions):
                qid = qa.get("id") if isinstance(qa, dict) else None
                if qid is None:
                    qid = f"{item_id if item_id is not None else i}-{j}"
                example = self._example(qa, f"{key}, question {j}", qid, dialogue_ids, labelled, bad)
                if example is not None:
                    examples.append(example)
        bad.summary()
        if not examples:
            raise UerError(f"{path}: no usable questions; the file must be shaped {C3_SHAPE}")
        return TaskData(str(path), examples, skipped=bad.count)

    def _example(self, qa, key, qid, dialogue_ids, labelled, bad) -> ChoiceExample | None:
        if not isinstance(qa, dict):
            bad.bad(key, "not an object", 'each question must be {"question": ..., "choice": [...], "answer": ...}')
            return None
        question, choices = qa.get("question"), qa.get("choice")
        if not isinstance(question, str):
            bad.bad(key, 'no "question" text', 'give the question a "question" string')
            return None
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            bad.bad(key, 'no "choice" list', 'give the question "choice": ["...", "..."], a list of choice texts')
            return None
        if len(choices) > self.choices_num:
            fix = (f"set task.max_choices_num={len(choices)} (or more)" if labelled else
                   f"give at most {self.choices_num} choices, or fine-tune with task.max_choices_num={len(choices)}")
            bad.bad(key, f"{len(choices)} choices but task.max_choices_num={self.choices_num}", fix)
            return None
        label = -1
        if labelled:
            answer = qa.get("answer")
            if not isinstance(answer, str):
                bad.bad(key, 'no "answer"', 'give the question its "answer" (one of its choices; an unlabelled '
                        "file goes to stage=infer)")
                return None
            if answer not in choices:
                bad.bad(key, f"the answer {answer!r} is not among its choices {choices}",
                        "make the answer the exact text of one choice")
                return None
            label = choices.index(answer)
        question_ids = self.tokenizer.encode(question)
        src, seg = [], []
        for choice in choices:
            ids, segs = self._input(self.tokenizer.encode(choice), question_ids, dialogue_ids)
            src.append(ids)
            seg.append(segs)
        return ChoiceExample(src, seg, label, qid, choices)

    def _input(self, choice: list[int], question: list[int], dialogue: list[int]) -> tuple[list[int], list[int]]:
        vocab = self.tokenizer.vocab
        room = self.seq_length - 4
        choice = choice[:room]
        question = question[:room - len(choice)]
        dialogue = dialogue[:room - len(choice) - len(question)]
        first = [vocab.cls_id, *choice, vocab.sep_id, *question, vocab.sep_id]
        return first + [*dialogue, vocab.sep_id], [1] * len(first) + [2] * (len(dialogue) + 1)

    def labels_num_from(self, train: TaskData) -> int:
        return self.choices_num

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        return MultipleChoiceModel(backbone, self.choices_num, self.pooling)

    def length(self, example: ChoiceExample) -> int:
        """The longest of the question's choice inputs: every input of a batch is padded to the longest."""
        return max(len(src) for src in example.src)

    def collate(self, examples: list[ChoiceExample]) -> dict[str, torch.Tensor]:
        inputs = [(row * self.choices_num + k, src, seg)
                  for row, example in enumerate(examples) for k, (src, seg) in enumerate(zip(example.src, example.seg))]
        width = max(len(src) for _, src, _ in inputs)
        src = torch.full((len(inputs), width), self.tokenizer.vocab.pad_id, dtype=torch.long)
        seg = torch.zeros((len(inputs), width), dtype=torch.long)
        for n, (_, ids, segs) in enumerate(inputs):
            src[n, :len(ids)] = torch.tensor(ids)
            seg[n, :len(segs)] = torch.tensor(segs)
        return {"src": src, "seg": seg, "slot": torch.tensor([slot for slot, _, _ in inputs], dtype=torch.long),
                "label": torch.tensor([example.label for example in examples], dtype=torch.long)}

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        pred = torch.cat(outputs).argmax(dim=-1).tolist()
        return {"acc": accuracy([example.label for example in data.examples], pred)}

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        logits = torch.cat(outputs)
        records = []
        for example, row in zip(data.examples, logits):
            real = row[:len(example.choices)]
            index = int(real.argmax())
            record = {"id": example.id, "index": index, "answer": example.choices[index]}
            if output_logits:
                record["logits"] = real.tolist()
            if output_prob:
                record["prob"] = torch.softmax(real, dim=-1).tolist()
            records.append(record)
        write_json(path, records)
