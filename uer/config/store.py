"""Every schema into Hydra's ConfigStore, where ``conf/`` extends them.

* ``schema/run/<stage>``: each stage's root (:mod:`uer.config.run`, the stage modules);
  ``conf/stage/<stage>.yaml`` starts from it;
* ``schema/<group>/<name>``: each registered component's schema (:mod:`uer.registry`);
  ``conf/<group>/<option>.yaml`` starts from the one of the class it picks.

:func:`registries` is the one list of component registries, so a new kind of component
is registered here once.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Optional

from hydra.core.config_store import ConfigStore

from uer.paths import CONF
from uer.registry import Registry



@functools.lru_cache(maxsize=None)
def registries() -> tuple[Registry, ...]:
    """The component registries, with every implementation module imported (they register on import)."""
    import uer.models  # noqa: F401  (registers embeddings, encoders, targets)
    from uer.models.embeddings import EMBEDDINGS
    from uer.models.encoders import ENCODERS
    from uer.models.targets import TARGETS
    from uer.tasks import TASKS, import_tasks
    from uer.tokenizers import TOKENIZERS
    from uer.tools import TOOLS, tool_names
    from uer.training.loggers import LOGGERS
    from uer.training.optim import OPTIMIZERS, SCHEDULERS

    import_tasks()
    tool_names()
    return EMBEDDINGS, ENCODERS, TARGETS, TOKENIZERS, TASKS, TOOLS, OPTIMIZERS, SCHEDULERS, LOGGERS


def registry_of(node: str) -> Optional[Registry]:
    """The registry whose components fill config node ``node`` (None for ``model``, ``hardware``, sections)."""
    return next((registry for registry in registries() if registry.group == node), None)


@functools.lru_cache(maxsize=None)
def register_configs() -> None:
    """Store every stage root and component schema (once per process)."""
    from uer.config.resolvers import register_resolvers
    from uer.stages import STAGES

    register_resolvers()
    store = ConfigStore.instance()
    for stage in STAGES.values():
        store.store(group="schema/run", name=stage.name, node=stage.root)
    for registry in registries():
        for name, schema in registry.configs().items():
            store.store(group=f"schema/{registry.group}", name=name, node=schema)


def compose(overrides: Iterable[str] = ()):
    """The config ``python main.py OVERRIDES`` composes (no run directory), also inside a Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

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
