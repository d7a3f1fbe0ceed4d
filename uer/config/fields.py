"""How a schema field is declared: its default, what it means, and how it behaves.

Every component's schema is a dataclass whose fields are made with :func:`setting`, so
the meaning of each key lives next to the key (``docs/reference.md`` is generated from
it) and a field can say that it is **tunable**: a setting that may change when a run
starts from a checkpoint (dropout), as opposed to the architecture, which comes from the
checkpoint.  A numeric field may declare its **bounds** (``bounds=POSITIVE``): every run's
values are checked against them before any work (:func:`uer.config.validate.check_values`),
so a learning rate of ``inf`` or a dropout of 1 stops the run in its first second.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Optional

from uer.errors import UerError


@dataclass(frozen=True)
class Bounds:
    """The values a number may take: finite, and within ``low``..``high`` (open ends excluded)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool) -> str:
        """What an admitted value is, e.g. ``at least 1``, ``a positive finite number``, ``in [0, 1)``."""
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is not None:
            return f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}" \
                   f"{')' if self.high_open else ']'}"
        if integer:
            return f"at least {_number(self.low + self.low_open)}"
        if self.low_open and self.low == 0:
            return "a positive finite number"
        return f"a finite number {'>' if self.low_open else '>='} {_number(self.low)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def at_least(low: int) -> Bounds:
    return Bounds(low=low)


FINITE = Bounds()  # any number but inf and nan
POSITIVE = Bounds(low=0, low_open=True)  # learning rates, epsilons
NON_NEGATIVE = Bounds(low=0)
FRACTION = Bounds(low=0, high=1, high_open=True)  # dropout, warm-up, Adam's betas
PROBABILITY = Bounds(low=0, high=1)


def setting(default: Any, help: str, *, tunable: bool = False, bounds: Optional[Bounds] = None) -> Any:
    """A dataclass field with ``default`` (lists and dicts are copied per instance), its meaning and,
    for a number, the ``bounds`` its values must lie in."""
    metadata = {"help": help, "tunable": tunable, "bounds": bounds}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def bounds_of(field: dataclasses.Field) -> Optional[Bounds]:
    return field.metadata.get("bounds")


def tunable_fields(cls: type) -> list[str]:
    """Names of the fields of ``cls`` declared tunable."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("tunable")]


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_bound(schema: type, f: dataclasses.Field, value: Any, path: str = "") -> None:
    """A UerError naming ``{path}{f.name}`` when ``value`` (of field ``f`` of ``schema``) lies outside its bounds."""
    bounds = bounds_of(f)
    if bounds is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not bounds.admits(value):
        hint = typing.get_type_hints(schema)[f.name]
        integer = int in (typing.get_args(hint) or (hint,))
        raise UerError(f"{path}{f.name}={value} must be {bounds.describe(integer)}")
