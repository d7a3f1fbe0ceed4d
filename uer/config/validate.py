"""Nothing unknown reaches a run: every key of the composed config is declared by a schema of it.

Hydra refuses a key a schema lacks (``encoder.hiden_size=1``), but its own advice -- add a
``+`` -- puts the key into the config unchecked.  :func:`check_run_config` walks the
composed config and stops the run, before any work, at the first key no schema of the
run declares, naming it, the component it was given to, and the closest key there is;
a key of another stage's section says which stage it belongs to.  :func:`unknown_key`
words the same message for Hydra's composition errors (:mod:`uer.cli`).  Then every
number is checked against the bounds its field declares (:func:`check_values`): a
learning rate of ``inf`` or ``-1``, a dropout of 1, a batch size of 0 stop the run (and
a sweep, before its first job) with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from uer.config.fields import bounds_of, check_bound
from uer.config.run import STAGE_ROOTS
from uer.errors import UerError
from uer.paths import CONF
from uer.registry import registry_of

LIST_KEYS = "python main.py ... --cfg job prints this run's keys"


def check_run_config(cfg: DictConfig, choices: Optional[dict] = None) -> None:
    """A UerError for the first key of ``cfg`` that its stage's schemas do not declare (``choices``: the
    group options chosen, for the message; read from the running Hydra app when not given)."""
    stage = cfg.get("stage")
    if stage not in STAGE_ROOTS:
        raise UerError(f"stage={stage} is not a stage; choose one of: {', '.join(STAGE_ROOTS)}")
    root = OmegaConf.get_type(cfg)
    if root is not STAGE_ROOTS[stage]:
        return  # not composed from conf/ (a config built in code): nothing to compare with
    for path, node in _typed_nodes(cfg, ""):
        schema = OmegaConf.get_type(node)
        declared = {f.name for f in dataclasses.fields(schema)}
        for key in node.keys():
            if key not in declared:
                raise UerError(unknown_key(f"{path}{key}", stage, cfg, choices))
    for key in cfg.keys():
        registry = registry_of(str(key))
        if registry is None or not OmegaConf.is_dict(cfg[key]):
            continue
        kind = cfg[key].get("type")
        if kind not in registry:
            raise UerError(f"{key}.type={kind} is not a {registry.kind}; choose one with {key}=OPTION "
                           f"({', '.join(registry.names())})")
        if registry.config_class(kind) is not OmegaConf.get_type(cfg[key]):
            raise UerError(f"{key}.type={kind} does not match the {key} chosen ({key}={_choice(str(key), choices) or '?'}); "
                           f"choose the {registry.kind} with {key}=OPTION instead of setting {key}.type")
    check_values(cfg)


def check_values(cfg: DictConfig) -> None:
    """A UerError for the first number of ``cfg`` outside the bounds its schema field declares."""
    for path, node in _typed_nodes(cfg, ""):
        schema = OmegaConf.get_type(node)
        for f in dataclasses.fields(schema):
            if bounds_of(f) is None or f.name not in node:
                continue
            try:
                value = node[f.name]
            except Exception:  # noqa: BLE001 - unset (???) or resolvable only inside a Hydra run: nothing to check
                continue
            check_bound(schema, f, value, path)


def _typed_nodes(node: DictConfig, prefix: str):
    """``(path, node)`` of every config node typed by a dataclass, ``node`` first."""
    if dataclasses.is_dataclass(OmegaConf.get_type(node)):
        yield prefix, node
    shape = OmegaConf.to_container(node, resolve=False)  # leaves unresolved: ${hydra:...} needs no run here
    for key, value in shape.items():
        if isinstance(value, dict):
            yield from _typed_nodes(node[key], f"{prefix}{key}.")


def unknown_key(full_key: str, stage: str, cfg: Optional[DictConfig] = None, choices: Optional[dict] = None) -> str:
    """One line about ``full_key``, which no schema of this ``stage``'s run declares.

    ``cfg`` is the run's config without that key (for the valid keys), ``choices`` the group
    options chosen (Hydra's ``runtime.choices``; read from the running app when not given).
    """
    head, _, rest = full_key.partition(".")
    owners = [name for name, root in STAGE_ROOTS.items() if name != stage and head in _root_fields(root)]
    if owners and (cfg is None or head not in cfg):
        line = f"{full_key} belongs to stage={' / '.join(owners)}, but this run is stage={stage}"
        twin = f"{stage}.{rest}" if rest and head in STAGE_ROOTS else None
        if twin and cfg is not None and OmegaConf.select(cfg, twin, default=_ABSENT) is not _ABSENT:
            return f"{line}; did you mean {twin}?"
        return f"{line}; set stage= to the stage you mean, or drop {full_key}"
    node_path, _, key = full_key.rpartition(".")
    choice = _choice(node_path, choices)
    where = f"{node_path}={choice}" if choice else (node_path or f"stage={stage}")
    others = _options_with_key(node_path, key)
    if others and choice not in others:
        return f"{full_key} is a key of {node_path}={' / '.join(others)}, not of {where}; choose {node_path}=" \
               f"{others[0]} or drop {full_key}"
    close = difflib.get_close_matches(key, _keys_at(node_path, cfg), n=1, cutoff=0.6)
    hint = f"did you mean {f'{node_path}.' if node_path else ''}{close[0]}?" if close else LIST_KEYS
    return f"{full_key} is not a key of {where}; {hint}"


def _options_with_key(group: str, key: str) -> list[str]:
    """The options of config group ``group`` whose schema has ``key`` (read from ``conf/<group>/``)."""
    registry = registry_of(group) if group and "." not in group else None
    if registry is None:
        return []
    names = [name for name, schema in registry.configs().items()
             if key in {f.name for f in dataclasses.fields(schema)}]
    options = []
    for path in sorted((CONF / group).glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if any(f"/schema/{group}/{name}@" in text for name in names):
            options.append(path.stem)
    return options


_ABSENT = object()


def _root_fields(root: type) -> set[str]:
    return {f.name for f in dataclasses.fields(root)}


def _keys_at(node_path: str, cfg: Optional[DictConfig]) -> list[str]:
    """The keys a node may hold: its schema's fields (or, untyped, the keys it has)."""
    if cfg is None:
        return []
    node = cfg if not node_path else OmegaConf.select(cfg, node_path, default=None)
    if not OmegaConf.is_dict(node):
        return []
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        return [f.name for f in dataclasses.fields(schema)]
    return [str(key) for key in node.keys()]


def _choice(group: str, choices: Optional[dict] = None) -> Optional[str]:
    """The option chosen for config group ``group`` (``size`` for ``model``): from ``choices``, else from
    the running Hydra app."""
    if choices is None:
        if not HydraConfig.initialized():
            return None
        choices = HydraConfig.get().runtime.choices
    return choices.get({"model": "size"}.get(group, group)) if group else None
