"""The resolvers ``conf/`` uses, registered with the schemas (before Hydra composes anything).

* ``${uer.run_name:EXPERIMENT,STAGE}``: the experiment preset's name when there is one, else
  the stage -- ``conf/config.yaml`` names run directories with it
  (``outputs/<experiment or stage>/<date>/<time>``, the same under ``multirun/``); they stay
  ordinary Hydra settings (``hydra.run.dir=...`` replaces them).
* ``${uer.threads_per_job:N_JOBS}``: this machine's cores shared out among ``N_JOBS`` jobs
  running at once (at least 1), so parallel sweep jobs (``launcher=joblib``) do not
  oversubscribe the cores.
"""

from __future__ import annotations

import os

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


def name_of(experiment, stage) -> str:
    """The experiment preset's name when one was chosen, else the stage."""
    return str(experiment) if experiment not in (None, "", "null") else str(stage)


def threads_per_job(n_jobs) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(n_jobs)))


RESOLVERS = {"uer.run_name": name_of, "uer.threads_per_job": threads_per_job}


def register_resolvers() -> None:
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def run_name() -> str:
    """:func:`name_of` the running Hydra job (``uer`` outside one)."""
    if not HydraConfig.initialized():
        return "uer"
    choices = HydraConfig.get().runtime.choices
    return name_of(choices.get("experiment"), choices.get("stage"))
