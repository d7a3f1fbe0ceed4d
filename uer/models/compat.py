"""Which embedding x encoder x target combinations can work, from what each component declares.

An encoder declares ``context(cfg)`` and ``needs_positions``; an embedding declares
``has_positions``; a target declares the ``contexts`` it can train and why (``needs``),
and may refuse more through ``check_context`` (see :mod:`uer.models.context`).  Nothing
here names a component: a new encoder is one class with its declarations.

:func:`check_model` runs before any work starts and again in ``build_model``;
:func:`combination_rows` lists every encoder option of ``conf/encoder`` with the
variants its class declares, for error messages and the README's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from uer.errors import UerError
from uer.paths import CONF
from uer.models.context import ALL_CONTEXTS, CAUSAL
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.subencoders import check_subencoder
from uer.models.targets import TARGETS



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


def check_model(embedding_cfg, encoder_cfg, target_cfg=None) -> None:
    """A UerError naming the valid combinations unless embedding x encoder (x target) can work."""
    encoder_cls = ENCODERS.lookup(encoder_cfg.type)
    embedding_cls = EMBEDDINGS.lookup(embedding_cfg.type)
    check_subencoder(embedding_cfg.subencoder)
    if encoder_cls.needs_positions and not embedding_cls.has_positions:
        raise UerError(f"embedding={embedding_cfg.type} has no position embedding, and {describe_encoder(encoder_cfg)} "
                       f"cannot tell the order of its inputs; use an embedding with positions "
                       f"({', '.join(positional_embeddings())}), or an encoder that knows the order itself; "
                       f"{valid_combinations_text()}")
    if target_cfg is None:
        return
    target_cls = TARGETS.lookup(target_cfg.type)
    context = encoder_cls.context(encoder_cfg)
    if context not in target_cls.contexts:
        raise UerError(f"target={target_cfg.type} needs {target_cls.needs}, but {describe_encoder(encoder_cfg)} "
                       f"is {context}; {valid_combinations_text()}")
    check = getattr(target_cls, "check_context", None)
    if check is not None:
        check(target_cfg, context, describe_encoder(encoder_cfg))


def positional_embeddings() -> list[str]:
    return [name for name in EMBEDDINGS.names() if EMBEDDINGS.get(name).has_positions]


@dataclass(frozen=True)
class EncoderChoice:
    """One way to ask for an encoder: its option and overrides, and what it then sees."""

    overrides: tuple[str, ...]
    context: str
    needs_positions: bool

    @property
    def text(self) -> str:
        """``lstm``, ``lstm with bidirectional=true``: how a user asks for it, briefly."""
        option = self.overrides[0].split("=", 1)[1]
        extra = [override.removeprefix("encoder.") for override in self.overrides[1:]]
        return f"{option} with {' '.join(extra)}" if extra else option


def combination_rows() -> list[EncoderChoice]:
    """Every ``conf/encoder`` option, plain and with each variant its class declares."""
    from uer.config.store import compose_option

    rows = []
    for option in sorted(path.stem for path in (CONF / "encoder").glob("*.yaml")):
        encoder_cfg = compose_option("encoder", option)
        cls = ENCODERS.lookup(encoder_cfg.type)
        for variant in ((), *((v,) for v in cls.variants)):
            cfg = compose_option("encoder", option, variant)
            rows.append(EncoderChoice((f"encoder={option}", *variant), cls.context(cfg), cls.needs_positions))
    return rows


def valid_combinations_text() -> str:
    """Which encoders each target takes, in one line (targets with the same encoders share an entry)."""
    rows = combination_rows()
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in TARGETS.names():
        contexts = TARGETS.get(name).contexts
        shown = ("every encoder",) if set(contexts) == set(ALL_CONTEXTS) else \
            tuple(row.text for row in rows if row.context in contexts)
        groups.setdefault(shown, []).append(name)
    parts = [f"target={'|'.join(names)}: {', '.join(shown)}" for shown, names in groups.items()]
    orderless = sorted({row.text.split(" ")[0] for row in rows if row.needs_positions})
    return (f"valid combinations -- {'; '.join(parts)}; encoders {', '.join(orderless)} need embedding="
            f"{' or '.join(positional_embeddings())}")


def combinations_markdown() -> str:
    """The README table: encoder choice x target, plus the embeddings it takes."""
    targets = TARGETS.names()
    lines = ["| encoder | sees | " + " | ".join(f"`{t}`" for t in targets) + " | embeddings |",
             "| --- | --- | " + " | ".join("---" for _ in targets) + " | --- |"]
    embeddings = EMBEDDINGS.names()
    for row in combination_rows():
        marks = []
        for name in targets:
            target = TARGETS.get(name)
            ok = row.context in target.contexts
            note = " (pooling ≠ first)" if ok and row.context == CAUSAL and hasattr(target, "check_context") else ""
            marks.append(f"yes{note}" if ok else "–")
        usable = [name for name in embeddings if EMBEDDINGS.get(name).has_positions or not row.needs_positions]
        lines.append(f"| `{' '.join(row.overrides)}` | {row.context} | " + " | ".join(marks)
                     + " | " + ", ".join(f"`{name}`" for name in usable) + " |")
    return "\n".join(lines)


def first_pooling_warning(encoder_cfg, pooling: Optional[str]) -> Optional[str]:
    """A warning when a task pools ``first`` on a causal encoder (it reads [CLS] alone)."""
    if pooling == "first" and encoder_context(encoder_cfg) == CAUSAL:
        return (f"task.pooling=first on the causal {describe_encoder(encoder_cfg)} classifies from [CLS] alone; "
                "task.pooling=mean, max or last use the whole input")
    return None
