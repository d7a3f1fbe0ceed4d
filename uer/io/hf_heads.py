"""Fine-tuned task heads in Hugging Face model directories: which uer task is which ``*For*`` class.

A fine-tuned uer checkpoint holds a backbone plus its task's head; a Hugging Face task
model is a backbone (under the family's prefix: ``bert.``, ``roberta.``, ``albert.``,
``electra.``, ``transformer.``) plus that class's head.  The tables here (:data:`HEADS`) pair
them, tensor by tensor, keyed by family (``config.json``'s ``model_type``) and then by uer
task name; the head classes' computations were read from transformers' source:

* ``classifier`` (text and text pair).  uer's ``ClassifierModel`` pools the sequence
  (``task.pooling``) and scores the vector with ``task.head`` (``task.head_bias``: its linears'
  biases); each class is one such setting, which :data:`HEADS` records as the layout's
  ``settings``:

  - ``BertForSequenceClassification``: the pooler (dense + tanh on [CLS]), then ``classifier``:
    ``output_layer_1`` = ``bert.pooler.dense``, ``output_layer_2`` = ``classifier``
    (``task.pooling=first task.head=dense_tanh``, the defaults);
  - ``RobertaForSequenceClassification`` / ``XLMRobertaForSequenceClassification``: the
    ``classifier`` head, ``dense`` + tanh + ``out_proj`` on <s>: ``output_layer_1`` =
    ``classifier.dense``, ``output_layer_2`` = ``classifier.out_proj``;
  - ``AlbertForSequenceClassification``: ``albert.pooler`` (one linear) + tanh, then
    ``classifier``;
  - ``ElectraForSequenceClassification``: ``classifier.dense`` + GELU + ``classifier.out_proj``
    on the first vector (``task.head=dense_gelu``);
  - ``GPT2ForSequenceClassification``: one bias-free ``score`` linear on the last token that is
    not ``pad_token_id`` (``task.pooling=last task.head=linear task.head_bias=false``: the last
    position whose segment is not padding, the same token in right-padded rows; ``config.json``
    gets ``pad_token_id``, so transformers batches; a tokenizer that ends a text with its padding
    token is refused: :meth:`ExportedHead.check_last_token`).

  A classifier fine-tuned with other settings than its family's class computes is refused,
  with the settings to fine-tune with.  Labels are class ids: their names are the ids as
  strings unless the checkpoint records names (``task_info.id2label``, kept from an imported
  model).
* ``ner`` = ``*ForTokenClassification`` of every family: ``output_layer`` is ``classifier``;
  the labels are the checkpoint's tags (``task_info.label2id``).
* ``cmrc`` = ``*ForQuestionAnswering`` of every family: ``output_layer`` (start, end) is
  ``qa_outputs``.

Other tasks have no such class and are refused (:data:`NO_HF_HEAD` says why).  The
head tensors move unchanged (same shapes, same orientation), so a round trip is
bit-identical.  This module knows names and labels only; the converter
(:mod:`uer.tools.convert`) maps the backbone, picks the family (a checkpoint fine-tuned from a
Hugging Face directory records it in ``config["hf"]``) and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from uer.errors import UerError

StateDict = dict[str, torch.Tensor]

CLASS_IDS, TAGS, SPAN = "class ids", "tags", "span"  # where a head's label names come from


@dataclass(frozen=True)
class HeadLayout:
    """One task's head in one family: the HF class and the (uer name, HF name) of each head tensor."""

    task: str
    architecture: str
    linears: tuple[tuple[str, str], ...]  # (uer module, HF module); the last one gives labels
    labels: str  # CLASS_IDS | TAGS | SPAN
    settings: dict = field(default_factory=dict)  # task settings the HF class implies (pooling, head, head_bias)

    @property
    def bias(self) -> bool:
        """Whether the head's linears have biases."""
        return self.settings.get("head_bias", True)

    def names(self) -> list[tuple[str, str]]:
        kinds = ("weight", "bias") if self.bias else ("weight",)
        return [(f"{uer}.{kind}", f"{hf}.{kind}") for uer, hf in self.linears for kind in kinds]

    def described_settings(self) -> str:
        """``task.pooling=first task.head=dense_tanh ...``: what a uer task computes this class with."""
        return " ".join(task_setting(key, value) for key, value in self.settings.items())

    @property
    def output(self) -> tuple[str, str]:
        """(uer, HF) name of the weight whose rows are the labels."""
        uer, hf = self.linears[-1]
        return f"{uer}.weight", f"{hf}.weight"


@dataclass(frozen=True)
class HeadFamily:
    prefix: str  # the backbone's prefix in a task model's state dict
    heads: dict[str, HeadLayout]
    instead: str = ""  # another way out for a classifier fine-tuned with settings the family's class does not compute


HEAD_CLASSES = {"classifier": "ForSequenceClassification", "ner": "ForTokenClassification",
                "cmrc": "ForQuestionAnswering"}
# What uer's classifier computes with task.pooling=first and the default head: dense, tanh, output linear.
DENSE_TANH = {"pooling": "first", "head": "dense_tanh", "head_bias": True}


def task_setting(key: str, value) -> str:
    """``task.key=value`` as it is written on the command line (``true``, not ``True``)."""
    return f"task.{key}={str(value).lower() if isinstance(value, bool) else value}"


def _heads(prefix: str, stem: str, classifier: tuple, settings: Optional[dict] = None,
           instead: str = "") -> HeadFamily:
    """A family whose token classification and question answering are one linear each (``classifier``,
    ``qa_outputs``); ``classifier``: the sequence classifier's (uer, HF) linears, computed with ``settings``."""
    heads = {"classifier": HeadLayout("classifier", f"{stem}{HEAD_CLASSES['classifier']}", classifier, CLASS_IDS,
                                      settings or DENSE_TANH)}
    heads["ner"] = HeadLayout("ner", f"{stem}{HEAD_CLASSES['ner']}", (("output_layer", "classifier"),), TAGS)
    heads["cmrc"] = HeadLayout("cmrc", f"{stem}{HEAD_CLASSES['cmrc']}", (("output_layer", "qa_outputs"),), SPAN)
    return HeadFamily(prefix, heads, instead)


# RoBERTa's and XLM-R's classification head: the first (<s>) vector, dense, tanh, out_proj (uer's ClassifierModel).
ROBERTA_CLASSIFIER = (("output_layer_1", "classifier.dense"), ("output_layer_2", "classifier.out_proj"))

HEADS: dict[str, HeadFamily] = {
    "bert": _heads("bert.", "Bert", (("output_layer_1", "bert.pooler.dense"), ("output_layer_2", "classifier"))),
    "roberta": _heads("roberta.", "Roberta", ROBERTA_CLASSIFIER),
    "xlm-roberta": _heads("roberta.", "XLMRoberta", ROBERTA_CLASSIFIER),
    # ALBERT's pooler is one linear + tanh on the first vector, then the classifier: the same computation.
    "albert": _heads("albert.", "Albert", (("output_layer_1", "albert.pooler"), ("output_layer_2", "classifier"))),
    "electra": _heads("electra.", "Electra", ROBERTA_CLASSIFIER, {**DENSE_TANH, "head": "dense_gelu"},
                      "export it with tool.hf_model_type=bert (BertForSequenceClassification computes "
                      "task.head=dense_tanh) if its embedding size is its hidden size"),
    "gpt2": _heads("transformer.", "GPT2", (("output_layer_2", "score"),),
                   {"pooling": "last", "head": "linear", "head_bias": False}),
}

# Why the other tasks' heads have no Hugging Face class to go to.
NO_HF_HEAD = {
    "c3": "its head is one linear layer on the pooled vector with no dense + tanh before it, where "
          "BertForMultipleChoice has the pooler's",
    "mt_classifier": "it has one head per dataset, where a Hugging Face model has one",
    "dbqa": "its predictions rank the answers of each question (qid), which no Hugging Face class does",
    "classifier_cv": "a cross-validation is several fold models; export one fold's best.pt as task=classifier",
    "multilabel": "ForSequenceClassification with problem_type=multi_label_classification has its layout, but "
                  "the converter does not write that problem_type (nor task.threshold) yet",
    "regression": "ForSequenceClassification with num_labels=1 (problem_type=regression) has its layout, but the "
                  "converter does not write that problem_type yet",
}


def crossing_heads(family: str = "bert") -> str:
    """``classifier -> BertForSequenceClassification, ...``: what crosses, for messages and docs."""
    return ", ".join(f"{task} -> {head.architecture}" for task, head in HEADS[family].heads.items())


# --- uer -> Hugging Face ----------------------------------------------------------------

@dataclass
class ExportedHead:
    """A fine-tuned checkpoint's head under HF names, with its ``config.json`` entries."""

    layout: HeadLayout
    prefix: str
    tensors: StateDict
    config: dict

    def hf_state(self, backbone: StateDict) -> StateDict:
        """The task model's state dict: the backbone (HF names, with or without the prefix) and the head."""
        prefixed = {key if key.startswith(self.prefix) else self.prefix + key: value for key, value in backbone.items()}
        return {**prefixed, **self.tensors}

    def hf_config(self, config: dict) -> dict:
        return {**config, **self.config}

    def check_last_token(self, closing_id: Optional[int], source: str) -> None:
        """A head on the last token (GPT-2's ``score``) is found by transformers as the last that is not
        ``pad_token_id``; uer's is the last of the framed text: ``closing_id``, the special token the
        tokenizer's framing ends a text with (None: the text's own last token), must not be the padding (id 0)."""
        if self.layout.settings.get("pooling") == "last" and closing_id == 0:
            raise UerError(f"{source}'s tokenizer ends every text with its padding token, which uer's "
                           f"task.pooling=last scores, where {self.layout.architecture} scores the last "
                           "token that is not pad_token_id (the one before it); fine-tune with a tokenizer whose "
                           "padding token is its own (pad_token in special_tokens_map.json), or keep "
                           "tool.output_format=uer_ckpt")


def split_head(payload: Optional[dict], uer_state: StateDict, source: str,
               family: str = "bert") -> tuple[StateDict, Optional[ExportedHead]]:
    """(``uer_state`` without the head, the head) of a fine-tuned checkpoint whose ``task`` node holds every key
    of its schema; (``uer_state``, None) for a checkpoint of no task.  A task without a Hugging Face head, or a
    head the class does not compute, is a :class:`UerError`."""
    task = ((payload or {}).get("config") or {}).get("task") or {}
    name = task.get("type")
    if name is None:
        return uer_state, None
    table = HEADS.get(family)
    if table is None:
        raise UerError(f"{source} is fine-tuned for task={name}; task heads cross to Hugging Face for the "
                       f"{', '.join(HEADS)} families only, not {family}: export it with tool.hf_model_type="
                       f"{next(iter(HEADS))} (the same weights), or keep tool.output_format=uer_ckpt")
    layout = table.heads.get(name)
    if layout is None:
        why = NO_HF_HEAD.get(name, "no Hugging Face class computes its head")
        raise UerError(f"{source} is fine-tuned for task={name}, which has no Hugging Face head: {why}; heads that "
                       f"cross: {crossing_heads(family)} (or keep tool.output_format=uer_ckpt)")
    differing = [key for key, value in layout.settings.items() if task.get(key) != value]
    if differing:
        key = differing[0]
        instead = f"; {table.instead}" if table.instead else ""
        raise UerError(f"{source} is fine-tuned with {task_setting(key, task.get(key))}, but {layout.architecture} "
                       f"computes {layout.described_settings()}; only such a model converts to it: fine-tune with "
                       f"those{instead}, or keep tool.output_format=uer_ckpt")
    if task.get("crf"):
        raise UerError(f"{source} is fine-tuned with task.crf=true: its tags are a CRF's Viterbi paths, where "
                       f"{layout.architecture} takes each token's best tag and has no place for the transition "
                       "scores; keep tool.output_format=uer_ckpt, or fine-tune with task.crf=false")
    missing = [uer for uer, _ in layout.names() if uer not in uer_state]
    if missing:
        raise UerError(f"{source} is fine-tuned for task={name} but has no {missing[0]}; it is not a complete "
                       f"{name} model")
    info = dict((payload or {}).get("task_info") or {})
    labels_num = int(uer_state[layout.output[0]].shape[0])
    names = dict(layout.names())
    tensors = {hf: uer_state[uer].detach().contiguous().clone() for uer, hf in names.items()}
    backbone = {key: value for key, value in uer_state.items() if key not in names}
    config = {"architectures": [layout.architecture], "num_labels": labels_num,
              **label_config(layout, info, labels_num, source)}
    return backbone, ExportedHead(layout, table.prefix, tensors, config)


def label_config(layout: HeadLayout, info: dict, labels_num: int, source: str) -> dict:
    """``id2label``/``label2id`` of a head with ``labels_num`` outputs (none for a span head)."""
    if layout.labels == SPAN:
        return {}
    if layout.labels == TAGS:
        label2id = info.get("label2id")
        if not isinstance(label2id, dict):
            raise UerError(f"{source} records no tag set (task_info.label2id); it was not written by stage=finetune "
                           "task=ner")
        names = {int(index): str(tag) for tag, index in label2id.items()}
    else:
        names = {int(index): str(name) for index, name in (info.get("id2label") or {}).items()}
        names = {index: names.get(index, str(index)) for index in range(labels_num)}
    if sorted(names) != list(range(labels_num)):
        raise UerError(f"{source} has {labels_num} outputs in {layout.output[0]} but its labels are "
                       f"{', '.join(names.values())}; the checkpoint is inconsistent")
    return {"id2label": {str(index): names[index] for index in range(labels_num)},
            "label2id": {names[index]: index for index in range(labels_num)}}


# --- Hugging Face -> uer ----------------------------------------------------------------

@dataclass
class ImportedHead:
    """An HF task model's head in uer names, with the task it is and what ``task_info`` records."""

    layout: HeadLayout
    tensors: StateDict
    task: dict  # task settings: type, labels_num and those the class implies
    task_info: dict

    def as_payload(self) -> dict:
        """What a fine-tuned checkpoint of this head records about its task (for :func:`split_head`)."""
        return {"config": {"task": self.task}, "task_info": self.task_info}


def head_layout(config: Optional[dict], family: str = "bert") -> Optional[HeadLayout]:
    """The head a ``config.json`` names in ``architectures`` (None: no task head of ours)."""
    architectures = (config or {}).get("architectures") or []
    table = HEADS.get(family)
    return next((head for head in table.heads.values() if head.architecture in architectures), None) if table \
        else None


def take_head(config: Optional[dict], config_path, state: StateDict, source: str,
              family: str = "bert") -> tuple[StateDict, Optional[ImportedHead]]:
    """(``state`` without the head, the head in uer names) of an HF task model; (``state``, None) when
    ``config.json`` names no task class of ours.  Missing head weights, labels that disagree with them,
    or a problem type uer's task does not train are a :class:`UerError`."""
    layout = head_layout(config, family)
    if layout is None:
        return state, None
    says = f"{config_path} says {layout.architecture}"
    absent = [hf for _, hf in layout.names() if hf not in state]
    if absent:
        raise UerError(f"{says} but {source} has no {absent[0]}; give the weights of that model (the directory "
                       "save_pretrained wrote), or a config.json whose architectures match the weights")
    check_shapes(layout, state, config.get("hidden_size"), f"{says} but {source}'s")
    problem = config.get("problem_type")
    if layout.labels == CLASS_IDS and problem not in (None, "single_label_classification"):
        raise UerError(f"{says} with problem_type={problem}; uer's task=classifier trains one class per text "
                       "(single_label_classification) and has no such head")
    rows = int(state[layout.output[1]].shape[0])
    if layout.labels == SPAN and rows != 2:
        raise UerError(f"{says} but {source}'s {layout.output[1]} has {rows} rows, where a span head has 2 "
                       "(start, end); give the weights of a question-answering model")
    names = id2label(config, config_path)
    labels_num = len(names) if names else config.get("num_labels", rows)
    if labels_num != rows:
        raise UerError(f"{says} with {labels_num} labels but {source}'s {layout.output[1]} has {rows} rows; "
                       "fix num_labels/id2label in config.json to match the weights")
    tensors = {uer: state[hf] for uer, hf in layout.names()}
    rest = {key: value for key, value in state.items() if key not in {hf for _, hf in layout.names()}}
    task = {"type": layout.task, **layout.settings}
    if layout.labels != SPAN:
        task["labels_num"] = rows
    return rest, ImportedHead(layout, tensors, task, task_info(layout, names, rows, says))


def check_shapes(layout: HeadLayout, state: StateDict, hidden, where: str) -> None:
    """Each head linear reads ``hidden`` features; all but the last also give ``hidden``; biases fit."""
    if not isinstance(hidden, int):
        return
    for index, (_, hf) in enumerate(layout.linears):
        weight = state[f"{hf}.weight"]
        rows = hidden if index < len(layout.linears) - 1 else None
        if weight.dim() != 2 or weight.shape[1] != hidden or rows not in (None, weight.shape[0]):
            raise UerError(f"{where} {hf}.weight has shape {tuple(weight.shape)}; with hidden_size {hidden} it must "
                           f"be ({rows or 'labels'}, {hidden}): the weights are not of this model")
        if layout.bias and tuple(state[f"{hf}.bias"].shape) != tuple(weight.shape[:1]):
            raise UerError(f"{where} {hf}.bias has shape {tuple(state[f'{hf}.bias'].shape)} where {hf}.weight has "
                           f"{weight.shape[0]} rows; it must be ({weight.shape[0]},): the weights are not of this "
                           "model")


def id2label(config: dict, config_path) -> dict[int, str]:
    """``config.json``'s ``id2label`` with integer ids ({} when absent)."""
    raw = config.get("id2label") or {}
    try:
        return {int(index): str(name) for index, name in raw.items()}
    except (AttributeError, ValueError):
        raise UerError(f"{config_path}: id2label is not an object of integer ids to names; fix it, e.g. "
                       '{"0": "negative", "1": "positive"}') from None


def task_info(layout: HeadLayout, names: dict[int, str], labels_num: int, says: str) -> dict:
    """What the imported model's checkpoint records about its labels."""
    info: dict = {"labels_num": labels_num}
    if layout.labels == TAGS:
        tags = [names.get(index) for index in range(labels_num)]
        if not all(tag and is_bio_tag(tag) for tag in tags):
            raise UerError(f"{says} with labels {', '.join(str(tag) for tag in tags)}; uer's task=ner predicts BIO "
                           'tags (O, B-TYPE, I-TYPE): name each label so in id2label, e.g. {"0": "O", "1": "B-LOC"}')
        info["label2id"] = {tag: index for index, tag in enumerate(tags)}
    elif layout.labels == CLASS_IDS and any(names.get(index) not in (None, str(index), f"LABEL_{index}")
                                            for index in range(labels_num)):
        info["id2label"] = {str(index): names.get(index, str(index)) for index in range(labels_num)}
    return info


def is_bio_tag(tag: str) -> bool:
    prefix, dash, kind = tag.partition("-")
    return tag == "O" or (prefix in ("B", "I") and bool(dash) and bool(kind))
