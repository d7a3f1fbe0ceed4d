"""How a schema field is declared: its default, what it means, and how it behaves.

Every component's schema is a dataclass whose fields are made with :func:`setting`, so
the meaning of each key lives next to the key (``docs/reference.md`` is generated from
it) and a field can say that it is **tunable**: a setting that may change when a run
starts from a checkpoint (dropout), as opposed to the architecture, which comes from the
checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


def setting(default: Any, help: str, *, tunable: bool = False) -> Any:
    """A dataclass field with ``default`` (lists and dicts are copied per instance) and its meaning."""
    metadata = {"help": help, "tunable": tunable}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def tunable_fields(cls: type) -> list[str]:
    """Names of the fields of ``cls`` declared tunable."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("tunable")]


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
