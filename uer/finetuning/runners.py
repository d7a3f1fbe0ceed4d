"""The fine-tuning runners by name: a task names the one that fine-tunes it in ``finetune_runner``
(:class:`uer.tasks.Task`), and ``stage=finetune`` looks it up here.

* ``single`` -- one train file, one dev file (:mod:`uer.finetuning.single`);
* ``cross_validation`` -- k folds of one file (:mod:`uer.finetuning.cross_validation`);
* ``multi_task`` -- several datasets, one backbone (:mod:`uer.finetuning.multi_task`).

Each is a ``run(cfg) -> float`` (the best dev score, for sweepers).
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from uer.finetuning import cross_validation, multi_task, single
from uer.registry import Registry

RUNNERS: Registry[Callable[[DictConfig], float]] = Registry("fine-tuning runner")
RUNNERS.register("single")(single.run)
RUNNERS.register("cross_validation")(cross_validation.run)
RUNNERS.register("multi_task")(multi_task.run)
# Only the single-file runner runs in several processes.
MULTI_PROCESS = ("single",)
