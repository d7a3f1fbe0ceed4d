"""Which embedding x encoder x target combinations can work, checked before any work starts.

What decides it is what an encoder's output at position ``i`` has seen:

* **causal** -- positions ``0..i`` only: ``gpt`` (transformer with ``mask: causal``),
  ``lstm``/``gru``/``rcnn``/``crnn`` (one direction), ``cnn``, ``gatedcnn`` (causal
  convolutions), ``attn``/``synt`` with ``encoder.mask=causal``;
* **bidirectional** -- every position: ``bert``, ``attn``, ``synt``, and
  ``lstm``/``gru``/``rcnn``/``crnn`` with ``encoder.bidirectional=true`` (one stack whose
  upper layers mix both directions);
* **forward+backward stacks** -- ``bilstm``/``bigru``: a forward stack (``0..i``) and a
  separate backward stack (``i..end``), concatenated; together they see everything.

Targets:

* ``lm`` predicts token ``i+1`` at ``i``: only a causal encoder has not seen it;
* ``bilm`` predicts ``i+1`` from the forward half and ``i-1`` from the backward half:
  only separate stacks keep each half blind to what it predicts;
* ``mlm``, ``bert``, ``albert`` predict masked tokens from both sides and (bert, albert)
  classify the pair from position 0: they need an encoder that sees the whole input at
  every position (bidirectional or forward+backward stacks);
* ``cls`` pools the whole sequence and works with every encoder, but ``pooling: first``
  on a causal encoder would classify ``[CLS]`` alone, so it is refused there.

Embeddings: ``word`` has no position embedding, so it needs an encoder that knows the
order by itself (RNNs and CNNs); the transformer, ``attn`` and ``synt`` need
``word_pos`` or ``word_pos_seg``.

:func:`check_stage_config` runs before a stage starts (``uer.stages.run_stage``);
:func:`check_model` also guards ``build_model``/``build_backbone``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from uer.errors import UerError

log = logging.getLogger("uer.config")

CAUSAL = "causal"
BIDIRECTIONAL = "bidirectional"
STACKS = "forward+backward stacks"

ORDERLESS_ENCODERS = ("transformer", "attn", "synt")  # need an embedding with positions
POSITIONLESS_EMBEDDINGS = ("word",)

TARGET_CONTEXTS: dict[str, tuple[str, ...]] = {
    "mlm": (BIDIRECTIONAL, STACKS),
    "bert": (BIDIRECTIONAL, STACKS),
    "albert": (BIDIRECTIONAL, STACKS),
    "lm": (CAUSAL,),
    "bilm": (STACKS,),
    "cls": (CAUSAL, BIDIRECTIONAL, STACKS),
}

TARGET_NEEDS = {
    "mlm": "context from both sides at every position",
    "bert": "context from both sides at every position",
    "albert": "context from both sides at every position",
    "lm": "a causal encoder (position i must not see token i+1)",
    "bilm": "separate forward and backward stacks (each half must not see the token it predicts)",
    "cls": "any encoder",
}


@dataclass(frozen=True)
class EncoderChoice:
    """One row of the table: how to ask for the encoder and what it sees."""

    name: str
    overrides: tuple[str, ...]
    context: str


# Every encoder a user can compose, with the options that change what it sees.
ENCODER_CHOICES: tuple[EncoderChoice, ...] = (
    EncoderChoice("bert", ("encoder=bert",), BIDIRECTIONAL),
    EncoderChoice("gpt", ("encoder=gpt",), CAUSAL),
    EncoderChoice("lstm", ("encoder=lstm",), CAUSAL),
    EncoderChoice("lstm bidirectional", ("encoder=lstm", "encoder.bidirectional=true"), BIDIRECTIONAL),
    EncoderChoice("gru", ("encoder=gru",), CAUSAL),
    EncoderChoice("gru bidirectional", ("encoder=gru", "encoder.bidirectional=true"), BIDIRECTIONAL),
    EncoderChoice("bilstm", ("encoder=bilstm",), STACKS),
    EncoderChoice("bigru", ("encoder=bigru",), STACKS),
    EncoderChoice("cnn", ("encoder=cnn",), CAUSAL),
    EncoderChoice("gatedcnn", ("encoder=gatedcnn",), CAUSAL),
    EncoderChoice("attn", ("encoder=attn",), BIDIRECTIONAL),
    EncoderChoice("attn causal", ("encoder=attn", "encoder.mask=causal"), CAUSAL),
    EncoderChoice("synt", ("encoder=synt",), BIDIRECTIONAL),
    EncoderChoice("synt causal", ("encoder=synt", "encoder.mask=causal"), CAUSAL),
    EncoderChoice("rcnn", ("encoder=rcnn",), CAUSAL),
    EncoderChoice("rcnn bidirectional", ("encoder=rcnn", "encoder.bidirectional=true"), BIDIRECTIONAL),
    EncoderChoice("crnn", ("encoder=crnn",), CAUSAL),
    EncoderChoice("crnn bidirectional", ("encoder=crnn", "encoder.bidirectional=true"), BIDIRECTIONAL),
)


def encoder_context(encoder) -> Optional[str]:
    """What ``encoder`` (a config with ``type`` ...) sees: CAUSAL, BIDIRECTIONAL, STACKS; None if unknown."""
    kind = getattr(encoder, "type", None)
    if kind in ORDERLESS_ENCODERS:
        return CAUSAL if getattr(encoder, "mask", "fully_visible") == "causal" else BIDIRECTIONAL
    if kind in ("lstm", "gru", "rcnn", "crnn"):
        return BIDIRECTIONAL if getattr(encoder, "bidirectional", False) else CAUSAL
    if kind in ("bilstm", "bigru"):
        return STACKS
    if kind in ("cnn", "gatedcnn"):
        return CAUSAL
    return None


def valid_combinations() -> dict[str, list[str]]:
    """Target -> the encoder choices (by name) it works with."""
    return {target: [c.name for c in ENCODER_CHOICES if c.context in contexts]
            for target, contexts in TARGET_CONTEXTS.items()}


def _choice_text(choice: EncoderChoice) -> str:
    """``lstm``, ``lstm with bidirectional=true``: how a user asks for the choice, briefly."""
    kind = choice.overrides[0].split("=", 1)[1]
    options = [override.removeprefix("encoder.") for override in choice.overrides[1:]]
    return f"{kind} with {' '.join(options)}" if options else kind


def valid_combinations_text() -> str:
    """The table in one line, for error messages (targets with the same encoders share an entry)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for target, contexts in TARGET_CONTEXTS.items():
        encoders = tuple(_choice_text(c) for c in ENCODER_CHOICES if c.context in contexts)
        groups.setdefault(encoders, []).append(target)
    parts = []
    for encoders, targets in groups.items():
        shown = ("every encoder (pooling mean, max or last on causal ones)" if targets == ["cls"]
                 else ", ".join(encoders))
        parts.append(f"target={'|'.join(targets)}: {shown}")
    return ("valid combinations -- " + "; ".join(parts)
            + "; embedding=word only with RNN/CNN encoders (lstm, gru, bilstm, bigru, cnn, gatedcnn, rcnn, crnn)")


def combinations_markdown() -> str:
    """The table for the README: encoder choice x target, plus the embeddings it takes."""
    targets = list(TARGET_CONTEXTS)
    lines = ["| encoder | sees | " + " | ".join(f"`{t}`" for t in targets) + " | embeddings |",
             "| --- | --- | " + " | ".join("---" for _ in targets) + " | --- |"]
    for choice in ENCODER_CHOICES:
        marks = []
        for target in targets:
            ok = choice.context in TARGET_CONTEXTS[target]
            marks.append(("yes (pooling ≠ first)" if target == "cls" and choice.context == CAUSAL else "yes")
                         if ok else "–")
        kind = choice.overrides[0].split("=", 1)[1]
        embeddings = "`word_pos_seg`, `word_pos`" if kind in ("bert", "gpt", "attn", "synt") else \
            "`word`, `word_pos`, `word_pos_seg`"
        lines.append(f"| `{' '.join(choice.overrides)}` | {choice.context} | " + " | ".join(marks)
                     + f" | {embeddings} |")
    return "\n".join(lines)


def _describe_encoder(encoder) -> str:
    kind = getattr(encoder, "type", "?")
    if kind in ORDERLESS_ENCODERS:
        return f"encoder {kind} with mask={getattr(encoder, 'mask', 'fully_visible')}"
    if kind in ("lstm", "gru", "rcnn", "crnn"):
        return f"encoder {kind} with bidirectional={str(bool(getattr(encoder, 'bidirectional', False))).lower()}"
    return f"encoder {kind}"


def check_model(embedding, encoder, target=None) -> None:
    """A UerError naming the valid combinations unless embedding x encoder (x target) can work.

    Unknown names pass: the registries report those, listing the known ones.
    """
    context = encoder_context(encoder)
    if context is None:
        return
    embedding_type = getattr(embedding, "type", None)
    if embedding_type in POSITIONLESS_EMBEDDINGS and getattr(encoder, "type", None) in ORDERLESS_ENCODERS:
        raise UerError(f"embedding={embedding_type} has no position embedding, and {_describe_encoder(encoder)} "
                       f"cannot tell the order of its inputs; use embedding=word_pos_seg or word_pos, or an RNN/CNN "
                       f"encoder; {valid_combinations_text()}")
    if target is None:
        return
    target_type = getattr(target, "type", None)
    if target_type not in TARGET_CONTEXTS:
        return
    if context not in TARGET_CONTEXTS[target_type]:
        raise UerError(f"target={target_type} needs {TARGET_NEEDS[target_type]}, but {_describe_encoder(encoder)} "
                       f"is {context}; {valid_combinations_text()}")
    if target_type == "cls" and context == CAUSAL and getattr(target, "pooling", "first") == "first":
        raise UerError(f"target.pooling=first reads position 0, which the causal {_describe_encoder(encoder)} "
                       "computes from [CLS] alone; use target.pooling=mean, max or last")


def check_stage_config(cfg) -> None:
    """Before a stage starts: refuse combinations that cannot work, fill in what the data decides.

    * pretrain: embedding x encoder x target; for target ``cls`` with ``target.labels_num``
      null, the number of classes of the dataset (a set value must cover the dataset);
    * finetune from the composed config (no checkpoint, or a UER ``.bin``): embedding x
      encoder, and a warning for ``task.pooling=first`` on a causal encoder.

    preprocess does not depend on the encoder, so it is not checked.
    """
    stage = cfg.get("stage")
    if stage == "pretrain":
        check_model(cfg.embedding, cfg.encoder, cfg.target)
        if cfg.target.type == "cls":
            _resolve_cls_labels(cfg)
    elif stage == "finetune":
        path = cfg.get("pretrained_model_path")
        if not path or str(path).endswith(".bin"):
            check_model(cfg.embedding, cfg.encoder)
            pooling = cfg.get("task", {}).get("pooling")
            if encoder_context(cfg.encoder) == CAUSAL and pooling == "first":
                log.warning("task.pooling=first on the causal %s classifies from [CLS] alone; "
                            "task.pooling=mean, max or last use the whole input", _describe_encoder(cfg.encoder))


def _resolve_cls_labels(cfg) -> None:
    from uer.data.pretrain_dataset import PretrainDataset

    dataset = PretrainDataset(cfg.pretrain.dataset_path)
    if dataset.target != "cls":
        return  # the pretrain stage refuses a dataset of another target, naming both
    found = dataset.labels_num()
    wanted = cfg.target.labels_num
    if wanted is None:
        cfg.target.labels_num = found
        log.info("target.labels_num=%d (labels 0..%d in %s)", found, found - 1, cfg.pretrain.dataset_path)
    elif wanted < found:
        raise UerError(f"target.labels_num={wanted} but dataset {cfg.pretrain.dataset_path} has labels up to "
                       f"{found - 1}; set target.labels_num={found} or null (counted from the dataset)")
