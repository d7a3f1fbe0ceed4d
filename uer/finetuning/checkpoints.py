"""The files a fine-tuning run keeps in its output directory, and whether a run may write there.

* ``best.pt`` -- the model of the best dev evaluation so far: what ``stage=infer`` and
  ``stage=score`` use (no trainer state);
* ``last.pt`` -- the state after the latest dev evaluation: the model, and in its
  ``trainer`` entry the optimizer, schedule, step, every rank's random state, the data
  position, the best score so far and the evaluations so far; ``resume=true`` continues
  from it.  Under ``hardware.strategy=fsdp`` its optimizer state is sharded: every rank's shard is in
  ``last.step_N.optim/`` beside it (N its step; :mod:`uer.training.fsdp`), written before ``last.pt``
  is replaced, and the previous step's directory is deleted after, so the ``last.pt`` on disk always
  has its shards.

Cross-validation keeps a pair per fold (``fold_K/best.pt``, ``fold_K/last.pt``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from uer.errors import UerError
from uer.training.fsdp import SHARDS_SUFFIX

log = logging.getLogger("uer.finetune")

BEST = "best.pt"
LAST = "last.pt"


def earlier_models(out_dir: Path) -> list[Path]:
    """``best.pt``/``last.pt`` in ``out_dir`` or one folder below it (cross-validation's folds)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(path for name in (BEST, LAST) for pattern in (name, f"*/{name}") for path in out_dir.glob(pattern)
                  if path.is_file())


def check_output_dir(out_dir: Path, resume: bool) -> None:
    """A fresh run must not replace an earlier run's models; ``resume=true`` needs a ``last.pt`` to continue,
    and starts again a run that stopped before its first one (``best.pt`` is written just before it)."""
    earlier = earlier_models(out_dir)
    started_only = bool(earlier) and not any(path.name == LAST for path in earlier)
    if resume:
        if started_only:
            log.warning("resume=true: %s holds no %s, so the run there stopped before its first one was written; "
                        "starting it again from step 0 (its %s will be replaced)", out_dir, LAST,
                        earlier[0].relative_to(out_dir))
        elif not earlier:
            raise UerError(f"resume=true but {out_dir} holds no {LAST} (written at every dev evaluation); set "
                           "output_model_path to the directory of the run to continue, or drop resume=true")
    elif earlier:
        how = ("resume=true starts it again (it stopped before its first last.pt)" if started_only
               else "pass resume=true to continue it")
        raise UerError(f"output_model_path {out_dir} already holds {earlier[0].relative_to(out_dir)} from an earlier "
                       f"run; {how}, or choose another output_model_path")


def last_shards(last_path: Path, step: int) -> Path:
    """The directory of the optimizer shards of ``last_path`` written at ``step``: ``last.step_N.optim``."""
    return last_path.with_name(f"{last_path.stem}.step_{step}{SHARDS_SUFFIX}")


def remove_earlier_shards(last_path: Path, *, keep: Path) -> None:
    """Delete the shard directories of ``last_path`` but ``keep``: those of the ``last.pt`` it replaced (or of
    one a stopped run wrote no ``last.pt`` for)."""
    for directory in last_path.parent.glob(f"{last_path.stem}.step_*{SHARDS_SUFFIX}"):
        if directory != keep:
            shutil.rmtree(directory, ignore_errors=True)


def files_fingerprint(paths) -> str:
    """One hash of the bytes of ``paths`` (in order): a resumed run checks its data did not change."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
