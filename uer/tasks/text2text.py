"""Text to text: an encoder-decoder fine-tuned to write a target for each source (translation, summaries,
question generation, ...).

Files: TSV with a header row naming ``source`` and ``target`` (in any order; other columns are
ignored); ``target`` may be absent from the file of ``stage=infer``::

    source	target
    今天天气很好	今天天气很好

The source is framed as the tokenizer frames one text -- ``[CLS] source [SEP]`` for BERT vocabularies,
``source </s>`` for T5 (:mod:`uer.tokenizers.framing`) -- in segment 1 and cut to ``seq_length`` tokens;
the target as the decoder's input ``tgt_in = [start] target`` and its labels ``tgt_out = target [end]``,
the end being the tokenizer's end-of-text token (``eos_token``: T5's ``</s>``; else ``[SEP]``), as
``stage=preprocess target=seq2seq`` builds them for BERT vocabularies.  ``task.tgt_seq_length`` is the
longest decoder input (the target's tokens + 1), as ``preprocess.tgt_seq_length``; a labelled row whose target needs
more, or more than the decoder's positions, is a bad row (``finetune.skip_bad_rows``).

The model is the run's :class:`~uer.models.model.Seq2seqModel` (``decoder=transformer`` and
``target=seq2seq``, which ``task=text2text`` brings), trained by token-level cross-entropy.  Dev and
test are scored on what the model generates (``task.generation``: greedy, beam search or sampling,
:mod:`uer.models.generation`) against the targets: BLEU, ROUGE-1/2/L and exact match
(:func:`uer.tasks.text_metrics.text_scores`, tokenised as ``task.metric_tokenize`` says).
Predictions: one ``generation`` per input row, in input order, beside its ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from uer.config.fields import at_least, setting
from uer.errors import UerError, where
from uer.models.generation import GenerationConfig, generate, generation_config
from uer.models.model import ModelOutput, Seq2seqModel
from uer.tasks import TASKS, Task, TaskConfig, TaskData
from uer.tasks.classifier import write_table
from uer.tasks.text_metrics import TEXT_METRICS, TOKENIZATIONS, text_scores
from uer.tasks.tsv import BadRows, read_tsv
from uer.tokenizers.detokenize import decode_ids


@dataclass
class Text2TextConfig(TaskConfig):
    """``task=text2text``: an encoder-decoder writes a target for each source."""

    tgt_seq_length: int = setting(64, "longest decoder input: the target's tokens + 1 ([start] target); a "
                                      "labelled row needing more is a bad row", bounds=at_least(2))
    metric_tokenize: str = setting("zh", "what BLEU and ROUGE count as tokens: 13a (space-separated text) | zh "
                                         "(each Chinese character) | char (every character)")
    generation: GenerationConfig = field(default_factory=GenerationConfig)


class Text2TextModel(Seq2seqModel):
    """The encoder-decoder, trained on ``tgt_in``/``tgt_out``; :meth:`predict` generates."""

    def __init__(self, model: Seq2seqModel, generation: GenerationConfig, eos_id: int):
        super().__init__(model.backbone, model.decoder, model.target)
        self.generation = generation
        self.eos_id = eos_id

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The generated ids of each row (B, longest), right-padded with 0."""
        rows = generate(self, batch["src"], batch["seg"], self.generation, eos_id=self.eos_id)
        out = batch["src"].new_zeros(len(rows), max([len(ids) for ids in rows] + [1]))
        for row, ids in enumerate(rows):
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


@dataclass
class Text2TextExample:
    src: list[int]
    seg: list[int]
    target: Optional[list[int]]  # the target's token ids (None when unlabelled)
    source_text: str
    target_text: Optional[str]
    line: int


@TASKS.register("text2text", config=Text2TextConfig)
class Text2TextTask(Task):
    name = "text2text"
    metrics = ("bleu", *(m for m in TEXT_METRICS if m != "bleu"))
    needs_decoder = True
    writes_scores = False  # a generation has no logits or probabilities

    def __init__(self, cfg, tokenizer, seq_length: int, info: dict | None = None):
        super().__init__(cfg, tokenizer, seq_length, info)
        if seq_length < 2:
            raise UerError(f"seq_length={seq_length} leaves no room for [CLS] and [SEP]; use at least 2")
        if not tokenizer.vocab.eos_id:  # None, or the padding (GPT-2 pads with it), which the loss ignores
            raise UerError(f"task=text2text ends each target with an end-of-text token other than the padding, but "
                           f"the tokenizer {tokenizer.vocab.path} has none (no eos_token or sep_token, or it pads "
                           "with its eos_token); name the tokens in special_tokens_map.json beside tokenizer.json "
                           "(pad_token and eos_token, two tokens)")
        if cfg.metric_tokenize not in TOKENIZATIONS:
            raise UerError(f"task.metric_tokenize={cfg.metric_tokenize} is not known; choose one of: "
                           f"{', '.join(TOKENIZATIONS)}")
        self.generation = generation_config(cfg.generation)
        self.generation.check("task.generation.", len(tokenizer.vocab))

    @property
    def configured_labels_num(self) -> int:
        """The vocabulary: what the decoder chooses from."""
        return len(self.tokenizer.vocab)

    def target_limit(self) -> tuple[int, str]:
        """The most decoder inputs a target may take and what sets it (``task.tgt_seq_length`` or the decoder's
        positions, ``info["target_positions"]``)."""
        positions = self.info.get("target_positions")
        if positions is not None and positions < self.cfg.tgt_seq_length:
            return positions, f"the decoder's {positions} positions"
        return self.cfg.tgt_seq_length, f"task.tgt_seq_length={self.cfg.tgt_seq_length}"

    def read(self, path, *, split: str, labels_num: int | None, skip_bad_rows: bool) -> TaskData:
        labelled = split != "infer"
        bad = BadRows(path, skip_bad_rows and labelled, "finetune.skip_bad_rows=true" if labelled else None)
        required = ("source", "target") if labelled else ("source",)
        table = read_tsv(path, required=required, bad=bad, example="<TAB>".join(required))
        limit, limited_by = self.target_limit()
        examples = []
        for line, fields in table.rows:
            row = dict(zip(table.columns, fields))
            src = self.tokenizer.framing.frame(self.tokenizer.encode(row["source"]))[0][:self.seq_length]
            target = None
            if labelled:
                target = self.tokenizer.encode(row["target"])
                if len(target) + 1 > limit:
                    bad.bad(line, f"the target has {len(target)} tokens, so the decoder's input ([start] target) "
                                  f"needs {len(target) + 1}, more than {limited_by} allows",
                            "shorten the target" + ("" if limited_by.startswith("the decoder") else
                                                    f", or raise task.tgt_seq_length to {len(target) + 1}"))
                    continue
            examples.append(Text2TextExample(src, [1] * len(src), target, row["source"], row.get("target"), line))
        bad.summary()
        if not examples:
            raise UerError(f"{where(path)}: no usable rows; the file must hold a header row and at least one example")
        return TaskData(str(path), examples, skipped=bad.count)

    def labels_num_from(self, train: TaskData) -> int:
        return self.configured_labels_num

    def build_model(self, backbone: nn.Module, labels_num: int) -> nn.Module:
        if not isinstance(backbone, Seq2seqModel):
            raise UerError("task=text2text needs an encoder-decoder model: add decoder=transformer target=seq2seq, "
                           "or start from a checkpoint of one")
        return Text2TextModel(backbone, self.generation, self.tokenizer.vocab.eos_id)

    def collate(self, examples: list[Text2TextExample]) -> dict[str, torch.Tensor]:
        width = max(len(example.src) for example in examples)
        src = torch.zeros(len(examples), width, dtype=torch.long)
        seg = torch.zeros(len(examples), width, dtype=torch.long)
        for row, example in enumerate(examples):
            src[row, :len(example.src)] = torch.tensor(example.src)
            seg[row, :len(example.seg)] = torch.tensor(example.seg)
        batch = {"src": src, "seg": seg}
        if all(example.target is not None for example in examples):
            start, end = self.info["decoder_start_id"], self.tokenizer.vocab.eos_id
            longest = max(len(example.target) for example in examples) + 1
            tgt_in = torch.zeros(len(examples), longest, dtype=torch.long)
            tgt_out = torch.zeros(len(examples), longest, dtype=torch.long)
            for row, example in enumerate(examples):
                tgt_in[row, :len(example.target) + 1] = torch.tensor([start, *example.target])
                tgt_out[row, :len(example.target) + 1] = torch.tensor([*example.target, end])
            batch.update(tgt_in=tgt_in, tgt_out=tgt_out)
        return batch

    def generations(self, outputs: list[torch.Tensor]) -> list[str]:
        """The text of each row's generated ids (0 = padding after them)."""
        rows = torch.cat(outputs).long().tolist() if outputs else []
        return [decode_ids(self.tokenizer, [i for i in ids if i != 0]) for ids in rows]

    def evaluate(self, outputs: list[torch.Tensor], data: TaskData, labels_num: int) -> dict[str, float]:
        scores = text_scores(self.generations(outputs), [example.target_text for example in data.examples],
                             self.cfg.metric_tokenize)
        return {metric: scores[metric] for metric in self.metrics}

    def write_predictions(self, path, outputs: list[torch.Tensor], data: TaskData, *, output_logits: bool,
                          output_prob: bool) -> None:
        rows = [[clean(example.source_text), clean(text)]
                for example, text in zip(data.examples, self.generations(outputs))]
        write_table(path, ["source", "generation"], rows)


def clean(text: str) -> str:
    """``text`` as one TSV field: tabs and line breaks become spaces."""
    return " ".join(text.replace("\t", " ").splitlines())
