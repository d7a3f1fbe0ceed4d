"""Stage dispatch: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``.

A multi-process run (``hardware.nproc_per_node * hardware.nnodes > 1``) first starts its
workers (:mod:`uer.launch`), each of which comes back here as one rank.  A
:class:`~uer.errors.UerError` is printed as one line on stderr and the process exits with
status 2, instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from omegaconf import DictConfig

from uer import distributed, launch
from uer.config.compat import check_stage_config
from uer.errors import UerError

STAGES = ("preprocess", "pretrain", "finetune", "infer", "tool")

log = logging.getLogger("uer")


def run_stage(cfg: DictConfig):
    if cfg.stage not in STAGES:
        _fail(f"stage={cfg.stage} is not a stage; choose one of: {', '.join(STAGES)}")
    module = importlib.import_module(f"uer.stages.{cfg.stage}")
    try:
        check_stage_config(cfg)  # combinations that cannot work fail here, before any work
        distributed.adopt_slurm_tasks()
        if launch.needed(cfg):
            return launch.launch(cfg)
        return module.run(cfg)
    except UerError as err:
        _fail(str(err))


def _fail(message: str):
    log.error(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
