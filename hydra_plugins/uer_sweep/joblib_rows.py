"""Hydra's joblib launcher, with a failed row for every job a killed worker process took down.

``conf/launcher/joblib.yaml`` picks it (``hydra.launcher._target_``).  When one of joblib's
worker processes dies (killed, or out of memory), joblib raises ``TerminatedWorkerError``
and stops the other workers; Hydra would print that traceback and write no table.  Here
the launch returns instead: each job of the batch that wrote no row of its own becomes a
failed row (:func:`uer.sweep.lost_jobs`), so the sweep ends as a sweep with failed jobs
does (its table, one error line, exit status 1).  The joblib launcher is imported only
when a sweep uses it (``pip install -e ".[parallel]"``).
"""

from __future__ import annotations

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class JoblibLauncherWithRows(Launcher):
    def __init__(self, **settings: Any) -> None:
        # lazy: the joblib launcher is an optional extra ([parallel])
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

        self.joblib = JoblibLauncher(**settings)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.joblib.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from uer.sweep import lost_jobs  # lazy: Hydra imports every plugin module at start-up; uer is heavier

        try:
            return self.joblib.launch(job_overrides, initial_job_idx)
        except Exception as err:  # noqa: BLE001 - a lost worker (TerminatedWorkerError) or a broken pool
            return lost_jobs(self.config, job_overrides, initial_job_idx, err)
