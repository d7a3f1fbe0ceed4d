"""The composition root: every component registered, every schema in Hydra's ConfigStore, one config composed.

* ``schema/run/<stage>``: each stage's root (registered with :func:`uer.config.run.stage_root`
  by the stage modules); ``conf/stage/<stage>.yaml`` starts from it;
* ``schema/<group>/<name>``: each registered component's schema (:mod:`uer.registry`);
  ``conf/<group>/<option>.yaml`` starts from the one of the class it picks.

Importing this module imports every layer that registers something, so the registries
(:func:`uer.registry.registry_of`) and the stage roots are complete before any config is
composed or checked.  :func:`registries` is the one list of component registries: a new
kind of component is registered here once.
"""

from __future__ import annotations

import functools
from typing import Iterable

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra

from uer.config.resolvers import register_resolvers
from uer.config.run import STAGE_ROOTS
from uer.models.decoders import DECODERS
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.targets import TARGETS
from uer.paths import CONF
from uer.registry import Registry, registry_of
from uer.stages import STAGES
from uer.tasks import TASKS, import_tasks
from uer.tokenizers import TOKENIZERS
from uer.tools import TOOLS, tool_names
from uer.training.loggers import LOGGERS
from uer.training.optim import OPTIMIZERS, SCHEDULERS


@functools.lru_cache(maxsize=None)
def registries() -> tuple[Registry, ...]:
    """The component registries, with every implementation module imported (they register on import)."""
    import_tasks()
    tool_names()
    return EMBEDDINGS, ENCODERS, DECODERS, TARGETS, TOKENIZERS, TASKS, TOOLS, OPTIMIZERS, SCHEDULERS, LOGGERS


@functools.lru_cache(maxsize=None)
def register_configs() -> None:
    """Store every stage root and component schema (once per process)."""
    if list(STAGE_ROOTS) != list(STAGES):
        raise RuntimeError(f"stage modules {list(STAGES)} registered root schemas for {list(STAGE_ROOTS)}")
    register_resolvers()
    store = ConfigStore.instance()
    for name, root in STAGE_ROOTS.items():
        store.store(group="schema/run", name=name, node=root)
    for registry in registries():
        for name, schema in registry.configs().items():
            store.store(group=f"schema/{registry.group}", name=name, node=schema)


def compose(overrides: Iterable[str] = ()):
    """The config ``python main.py OVERRIDES`` composes (no run directory), also inside a Hydra app."""
    register_configs()
    overrides = list(overrides)
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


@functools.lru_cache(maxsize=None)
def compose_option(group: str, option: str, overrides: tuple[str, ...] = ()):
    """The schema instance of ``group=option`` (plus ``overrides``), at a stage that has the group."""
    stage = {"task": "finetune", "tool": "tool"}.get(group, "pretrain")
    cfg = compose([f"stage={stage}", f"{group}={option}", *overrides])
    registry = registry_of(group)
    return registry.build_config(cfg[group]) if registry is not None else cfg[group]
