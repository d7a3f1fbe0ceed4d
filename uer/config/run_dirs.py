"""Run directories named after what ran: ``outputs/<experiment or stage>/<date>/<time>``.

``conf/config.yaml`` sets ``hydra.run.dir`` and ``hydra.sweep.dir`` with the resolver
``${uer.run_name:EXPERIMENT,STAGE}`` (registered with the schemas, before Hydra composes):
the experiment preset's name when there is one, else the stage.  Both stay ordinary Hydra
settings: ``hydra.run.dir=...`` on the command line (or in a preset) replaces them.
"""

from __future__ import annotations

from omegaconf import OmegaConf

RESOLVER = "uer.run_name"


def name_of(experiment, stage) -> str:
    """The experiment preset's name when one was chosen, else the stage."""
    return str(experiment) if experiment not in (None, "", "null") else str(stage)


def register_resolver() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, name_of)


def run_name() -> str:
    """:func:`name_of` the running Hydra job (``uer`` outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "uer"
    choices = HydraConfig.get().runtime.choices
    return name_of(choices.get("experiment"), choices.get("stage"))
