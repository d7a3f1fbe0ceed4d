"""Stages: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``; :data:`STAGES` is the dispatch table.

Each stage module declares its root schema (the whole shape of its run's config, see
:mod:`uer.config.run`; registered with :func:`~uer.config.run.stage_root`), may declare
``outputs(cfg)`` -- where it writes --, ``input_keys(cfg)`` -- the settings that name what it
reads, which no output may overwrite (:func:`uer.io.outputs.check_apart`) -- and
``prepare(cfg)`` -- checks and decisions made once, in the launching process, before any
worker starts -- and runs in ``run(cfg)``.  A
stage stays thin: the training stages train in the one training session of
:mod:`uer.training.session`, and ``stage=finetune`` hands its run to the runner the task
names, looked up by name in the registry :data:`uer.finetuning.runners.RUNNERS`.
:mod:`uer.app` checks, prepares and runs them.
"""

from __future__ import annotations

from uer.config.run import STAGE_NAMES
from uer.stages import finetune, infer, preprocess, pretrain, score, tool

# Stage name -> its module, in STAGE_NAMES' order.
_MODULES = {module.__name__.rsplit(".", 1)[1]: module for module in (preprocess, pretrain, finetune, infer, score, tool)}
STAGES = {name: _MODULES[name] for name in STAGE_NAMES}
