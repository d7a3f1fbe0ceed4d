"""Hydra's Optuna sweeper, numbering a resumed search's jobs after the trials its study already holds.

``conf/hparams_search/finetune_optuna.yaml`` picks it (``hydra.sweeper._target_``) with the
study in a journal file of the sweep directory (:class:`uer.search.JournalFileStorage`).
Hydra's sweeper numbers jobs from 0 in every process; rerun into the same sweep directory,
it would write job 0's directory again.  This one starts at the number of trials the study
holds, so job ``k`` is trial ``k`` whether the search ran in one go or in several; and a
resumed search's sampler is seeded with ``seed + k`` (a sampler seeded as before would draw
the first run's random trials again).  The Optuna sweeper is imported only when the search
runs (``pip install -e ".[search]"``).
"""

from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig


class ResumableOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.optuna = OptunaSweeper(**settings)
        self.storage = settings.get("storage")
        self.study_name = settings.get("study_name")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        trials_of = getattr(self.storage, "trials_of", None)
        earlier = trials_of(self.study_name) if trials_of is not None else 0
        self.optuna.sweeper.job_idx = earlier
        sampler = config.hydra.sweeper.get("sampler")
        if earlier and sampler is not None and sampler.get("seed") is not None:
            self.optuna.sweeper.sampler = instantiate(sampler, seed=sampler.seed + earlier)

    def sweep(self, arguments: List[str]) -> Any:
        return self.optuna.sweep(arguments)
