"""Which embedding x encoder x target combinations can work, from what each component declares.

An encoder declares ``context(cfg)`` and ``needs_positions`` (a bool, or a function of
its config); an embedding declares ``has_positions``; a target declares the ``contexts``
it can train and why (``needs``), whether it reads a decoder's output
(``needs_decoder``), and may refuse more through ``check_context`` (see
:mod:`uer.models.context`).  Nothing here names a component: a new encoder is one class
with its declarations.

:func:`check_model` runs before any work starts and again in ``build_model``; a
combination that cannot work is an :class:`IncompatibleModel`, whose message says why.
The table of the combinations that do work is composed from ``conf/`` by
:mod:`uer.combinations`, which adds it to the message where the error is reported.
"""

from __future__ import annotations

from typing import Optional

from uer.errors import UerError
from uer.models.context import CAUSAL
from uer.models.decoders import DECODERS
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.layers import check_layer_choices
from uer.models.subencoders import check_subencoder
from uer.models.targets import TARGETS


class IncompatibleModel(UerError):
    """An embedding x encoder x target that cannot work; the message says why."""


def describe_encoder(cfg) -> str:
    """``encoder lstm with bidirectional=false``: the encoder and the settings that decide its context."""
    cls = ENCODERS.lookup(cfg.type)
    settings = [variant.split("=", 1)[0].removeprefix("encoder.") for variant in cls.variants]
    if hasattr(cfg, "mask") and "mask" not in settings:
        settings.append("mask")
    shown = " ".join(f"{key}={_text(getattr(cfg, key))}" for key in settings)
    return f"encoder {cfg.type}" + (f" with {shown}" if shown else "")


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def encoder_context(cfg) -> str:
    return ENCODERS.lookup(cfg.type).context(cfg)


def needs_positions(encoder_cfg) -> bool:
    """Whether the encoder ``encoder_cfg`` describes needs an embedding with positions."""
    needs = ENCODERS.lookup(encoder_cfg.type).needs_positions
    return needs(encoder_cfg) if callable(needs) else needs


def check_model(embedding_cfg, encoder_cfg, target_cfg=None, decoder_cfg=None) -> None:
    """An :class:`IncompatibleModel` saying why, unless embedding x encoder (x target) (x decoder) can work."""
    encoder_cls = ENCODERS.lookup(encoder_cfg.type)
    embedding_cls = EMBEDDINGS.lookup(embedding_cfg.type)
    check_subencoder(embedding_cfg.subencoder)
    check_layer_choices(encoder_cfg, "encoder")
    if needs_positions(encoder_cfg) and not embedding_cls.has_positions:
        raise IncompatibleModel(f"embedding={embedding_cfg.type} has no position embedding, and "
                                f"{describe_encoder(encoder_cfg)} cannot tell the order of its inputs; use an embedding "
                                f"with positions ({', '.join(positional_embeddings())}), or an encoder that knows the "
                                "order itself")
    if decoder_cfg is not None:
        check_decoder(embedding_cls, encoder_cfg, decoder_cfg)
    if target_cfg is None:
        return
    target_cls = TARGETS.lookup(target_cfg.type)
    reads_decoder = getattr(target_cls, "needs_decoder", False)
    if decoder_cfg is not None and not reads_decoder:
        raise IncompatibleModel(f"decoder={decoder_cfg.type} feeds a target that reads a decoder's output "
                                f"({', '.join(decoder_targets())}), but target={target_cfg.type} reads the encoder's "
                                f"alone; drop decoder= (decoder=null) or choose target={decoder_targets()[0]}")
    if decoder_cfg is None and reads_decoder:
        raise IncompatibleModel(f"target={target_cfg.type} predicts the output sequence from a decoder's states, "
                                "and this model has none; add decoder=transformer")
    context = encoder_cls.context(encoder_cfg)
    if context not in target_cls.contexts:
        raise IncompatibleModel(f"target={target_cfg.type} needs {target_cls.needs}, but "
                                f"{describe_encoder(encoder_cfg)} is {context}")
    check = getattr(target_cls, "check_context", None)
    if check is not None:
        check(target_cfg, context, describe_encoder(encoder_cfg))


def check_decoder(embedding_cls, encoder_cfg, decoder_cfg) -> None:
    """The decoder attends over the encoder's states and embeds its input with the model's embedding."""
    decoder_cls = DECODERS.lookup(decoder_cfg.type)
    check_layer_choices(decoder_cfg, "decoder")
    if decoder_cfg.hidden_size != encoder_cfg.hidden_size:
        raise IncompatibleModel(f"decoder.hidden_size={decoder_cfg.hidden_size} differs from encoder.hidden_size="
                                f"{encoder_cfg.hidden_size}; the decoder's cross-attention reads the encoder's states: "
                                "make them equal")
    if decoder_cls.needs_positions(decoder_cfg) and not embedding_cls.has_positions:
        raise IncompatibleModel(f"decoder={decoder_cfg.type} without relative positions cannot tell the order of its "
                                "inputs, and the embedding it shares the form of has none; use an embedding with "
                                f"positions ({', '.join(positional_embeddings())}) or set "
                                "decoder.relative_position_buckets")


def decoder_targets() -> list[str]:
    return [name for name in TARGETS.names() if getattr(TARGETS.get(name), "needs_decoder", False)]


def positional_embeddings() -> list[str]:
    return [name for name in EMBEDDINGS.names() if EMBEDDINGS.get(name).has_positions]


def first_pooling_warning(encoder_cfg, pooling: Optional[str]) -> Optional[str]:
    """A warning when a task pools ``first`` on a causal encoder (it reads [CLS] alone)."""
    if pooling == "first" and encoder_context(encoder_cfg) == CAUSAL:
        return (f"task.pooling=first on the causal {describe_encoder(encoder_cfg)} classifies from [CLS] alone; "
                "task.pooling=mean, max or last use the whole input")
    return None
