"""A run that starts from a checkpoint takes the checkpoint's architecture; the user's choices are checked.

When ``pretrained_model_path`` is one of our checkpoints, the architecture (the nodes
named by ``nodes``: sizes, tokenizer, embedding, encoder) comes from it, so no size or
encoder flags are needed.  A value the user *chose* -- on the command line, or through
the ``experiment=`` preset -- that differs from the checkpoint's is an error naming the
key; composed defaults that differ are replaced (and the run's recorded config shows
the checkpoint's values).  Fields declared tunable (dropout) are not architecture: they
keep this run's value, which is what trains and what the new checkpoint records.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from uer.config.fields import tunable_fields
from uer.errors import UerError
from uer.paths import CONF
from uer.registry import registry_of

log = logging.getLogger("uer.config")

# A group on the command line sets the node it fills.
GROUP_NODES = {"size": "model", "tokenizer": "tokenizer", "embedding": "embedding", "encoder": "encoder",
               "target": "target"}


def command_line_overrides() -> list[str]:
    """The overrides this run was started with (empty outside a Hydra app)."""
    if not HydraConfig.initialized():
        return []
    return [str(override) for override in HydraConfig.get().overrides.task]


def chosen_keys(overrides: Iterable[str]) -> tuple[set[str], set[str]]:
    """``(nodes, keys)`` the user chose: whole nodes (through a group choice) and single dotted keys.

    An ``experiment=NAME`` preset counts as the user's choice of everything it sets.
    """
    nodes, keys = set(), set()
    for text in overrides:
        key, _, value = text.partition("=")
        key = key.lstrip("+~")
        if key in GROUP_NODES:
            nodes.add(GROUP_NODES[key])
        elif key == "experiment" and value and value != "null":
            preset_nodes, preset_keys = _preset_choices(value)
            nodes |= preset_nodes
            keys |= preset_keys
        else:
            keys.add(key)
    return nodes, keys


def _preset_choices(name: str) -> tuple[set[str], set[str]]:
    path = CONF / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return set(), set()
    preset = OmegaConf.load(path)
    nodes = set()
    for entry in preset.get("defaults", []):
        if isinstance(entry, str) or not OmegaConf.is_dict(entry):
            continue
        for key in entry:
            group = str(key).removeprefix("override ").strip().lstrip("/")
            if group in GROUP_NODES:
                nodes.add(GROUP_NODES[group])
    keys = set()

    def walk(node, prefix):
        for key, value in node.items():
            if key == "defaults":
                continue
            if OmegaConf.is_dict(value):
                walk(value, f"{prefix}{key}.")
            else:
                keys.add(f"{prefix}{key}")

    walk(preset, "")
    return nodes, keys


def adopt_architecture(cfg: DictConfig, stored: dict, nodes: Iterable[str], source, overrides: list[str]) -> None:
    """Replace ``cfg``'s ``nodes`` by the checkpoint's ``stored`` ones, keeping this run's tunable values.

    A UerError names the first keys where the user chose another value than the checkpoint has.
    """
    chosen_nodes, chosen = chosen_keys(overrides)
    conflicts, replaced = [], []
    for node in nodes:
        if stored.get(node) is None or cfg.get(node) is None:  # absent, or none (a model without a decoder)
            continue
        composed = OmegaConf.to_container(cfg[node], resolve=True)
        raw = OmegaConf.to_container(cfg[node], resolve=False)
        saved = stored[node]
        schema = OmegaConf.get_type(cfg[node])
        tunable = set(tunable_fields(schema)) if schema not in (None, dict) else set()
        for key in sorted(set(composed) | set(saved)):
            if key in tunable or composed.get(key) == saved.get(key):
                continue
            if _is_chosen(node, key, raw.get(key), chosen_nodes, chosen):
                conflicts.append(f"{node}.{key}={composed.get(key)!r} (checkpoint: {saved.get(key)!r})")
            else:
                replaced.append(f"{node}.{key}")
        if conflicts:
            continue
        keep = {key: composed[key] for key in tunable if key in composed}
        registry = registry_of(node)
        value = {**saved, **{k: v for k, v in keep.items() if k in saved or registry is None}}
        with open_dict(cfg):
            if registry is not None:
                cfg[node] = OmegaConf.structured(registry.build_config(value))
            else:
                cfg[node] = OmegaConf.merge(OmegaConf.structured(schema), value)
    if conflicts:
        shown = "; ".join(conflicts[:3]) + (f"; and {len(conflicts) - 3} more" if len(conflicts) > 3 else "")
        raise UerError(f"pretrained_model_path={source} sets the architecture, but this run asks for {shown}; drop "
                       "those overrides (the checkpoint's architecture is used), or start from another checkpoint")
    if replaced:
        log.info("architecture from %s (%d composed default(s) replaced, e.g. %s)", source, len(replaced),
                 ", ".join(replaced[:3]))


def _is_chosen(node: str, key: str, raw, chosen_nodes: set[str], chosen: set[str]) -> bool:
    if node in chosen_nodes or f"{node}.{key}" in chosen:
        return True
    if isinstance(raw, str) and raw.startswith("${") and raw.endswith("}"):
        source = raw[2:-1]  # ${model.hidden_size}: chosen when the size is
        return source.split(".")[0] in chosen_nodes or source in chosen
    return False
