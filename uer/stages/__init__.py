"""Stage dispatch: ``stage=NAME`` runs ``uer.stages.NAME.run(cfg)``.

A :class:`~uer.errors.UerError` raised by a stage is printed as one line on stderr and
the process exits with status 2, instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from omegaconf import DictConfig

from uer.errors import UerError

STAGES = ("preprocess", "pretrain", "finetune", "infer", "tool")

log = logging.getLogger("uer")


def run_stage(cfg: DictConfig):
    if cfg.stage not in STAGES:
        _fail(f"stage={cfg.stage} is not a stage; choose one of: {', '.join(STAGES)}")
    module = importlib.import_module(f"uer.stages.{cfg.stage}")
    try:
        return module.run(cfg)
    except UerError as err:
        _fail(str(err))


def _fail(message: str):
    log.error(message)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
