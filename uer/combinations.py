"""The embedding x encoder x target combinations that work, composed from ``conf/``, and the
wording of a refused one.

The models declare what each component can do (:mod:`uer.models.compat`) and raise a plain
:class:`~uer.models.compat.IncompatibleModel`; this module composes every ``conf/encoder``
option (plain and with each variant its class declares) to list what does work, for the
refusal's message (:func:`worded`) and for the table in docs/pretraining.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from uer.composition import compose_option
from uer.errors import UerError
from uer.models.compat import IncompatibleModel, needs_positions, positional_embeddings
from uer.models.context import ALL_CONTEXTS, CAUSAL
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.targets import TARGETS
from uer.paths import CONF


def worded(err: UerError) -> str:
    """The message of ``err``; for a combination that cannot work, followed by the valid ones."""
    if isinstance(err, IncompatibleModel):
        return f"{err}; {valid_combinations_text()}"
    return str(err)


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
    rows = []
    for option in sorted(path.stem for path in (CONF / "encoder").glob("*.yaml")):
        encoder_cfg = compose_option("encoder", option)
        cls = ENCODERS.lookup(encoder_cfg.type)
        for variant in ((), *((v,) for v in cls.variants)):
            cfg = compose_option("encoder", option, variant)
            rows.append(EncoderChoice((f"encoder={option}", *variant), cls.context(cfg), needs_positions(cfg)))
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
    """The table of docs/pretraining.md: encoder choice x target, plus the embeddings it takes."""
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
