"""Name -> class registries: the single place that maps a config name to an implementation.

A registry of configurable components (embeddings, encoders, targets, tokenizers, tasks,
tools, optimizers, schedules) also keeps each component's **schema**: the dataclass of
the keys it reads, declared next to the class (fairseq's discipline).  The registry puts
every schema into Hydra's ConfigStore as ``schema/<group>/<name>``
(:func:`uer.composition.register_configs`), and each option file
``conf/<group>/<option>.yaml`` extends it, so a key the chosen component does not have
fails at composition.  :meth:`Registry.build_config` turns a stored plain dict (e.g. the
config a checkpoint recorded) back into that dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, Optional, TypeVar

from uer.errors import UerError

T = TypeVar("T")

# The registries of config groups, by group: filled as the modules that define them are imported (the
# composition root, :mod:`uer.composition`, imports them all before any config is checked).
_BY_GROUP: dict[str, "Registry"] = {}


def registry_of(node: str) -> Optional["Registry"]:
    """The registry whose components fill config node ``node`` (None for ``model``, ``hardware``, sections)."""
    return _BY_GROUP.get(node)


class Registry(Generic[T]):
    """A named collection of builders for one component kind (embedding, encoder, ...).

    ``group`` is the config group whose node (``cfg.<group>``) holds the chosen
    component's settings, with its registered name under ``type``; registries without a
    group hold no schemas.
    """

    def __init__(self, kind: str, group: Optional[str] = None):
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._configs: dict[str, type] = {}
        if group is not None:
            if group in _BY_GROUP:
                raise ValueError(f"two registries fill config group {group!r}")
            _BY_GROUP[group] = self

    def register(self, name: str, config: Optional[type] = None) -> Callable[[T], T]:
        if config is not None and not dataclasses.is_dataclass(config):
            raise TypeError(f"{self.kind} {name!r}: config must be a dataclass")

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            if config is not None:
                self._configs[name] = config
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    def lookup(self, name: str) -> T:
        """:meth:`get`, with an unknown name as a :class:`UerError` naming the choices."""
        try:
            return self.get(name)
        except KeyError as err:
            raise UerError(err.args[0]) from None

    def config_class(self, name: str) -> type:
        """The schema dataclass registered with ``name``."""
        self.lookup(name)
        return self._configs[name]

    def configs(self) -> dict[str, type]:
        """Registered name -> schema dataclass."""
        return dict(self._configs)

    def build_config(self, stored: Any) -> Any:
        """The schema instance for ``stored``: a dataclass instance (returned as is), a config
        node or a plain dict with ``type`` (e.g. what a checkpoint recorded).

        Keys the schema does not declare are dropped: older checkpoints recorded one union
        of every component's keys.  A missing key takes the schema's default.
        """
        if dataclasses.is_dataclass(stored) and not isinstance(stored, type):
            return stored
        values = dict(stored.items()) if hasattr(stored, "items") else None
        if values is None or "type" not in values:
            raise UerError(f"a {self.kind} config needs a 'type' naming the {self.kind}; got {stored!r}")
        cls = self.config_class(values["type"])
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{key: value for key, value in values.items() if key in names})

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
