"""Where things are: the bundled config tree and files, and the rule for where a run writes its model."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from uer.runtime import run_dir

REPOSITORY = Path(__file__).resolve().parents[1]
CONF = REPOSITORY / "conf"
# Folders of the repository whose files a default setting names relative to it (models/google_zh_vocab.txt).
BUNDLED_DIRS = ("models",)

log = logging.getLogger("uer")


def bundled_file(path) -> Path:
    """``path`` as given, except a relative path to a bundled file (``models/...``) that is not there from this
    working directory: then the repository's copy, so the defaults work from any directory."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not path.parts or path.parts[0] not in BUNDLED_DIRS:
        return path
    bundled = REPOSITORY / path
    if not bundled.is_file():
        return path
    log.info("%s is not in the working directory; using the bundled %s", path, bundled)
    return bundled


def model_dir(cfg: DictConfig, run_directory: Path | None = None) -> Path:
    """Where a run writes its model: ``output_model_path``, else ``model/`` in the run directory
    (``run_directory``, default Hydra's output directory of this run)."""
    if cfg.get("output_model_path"):
        return Path(cfg.output_model_path)
    return (run_directory if run_directory is not None else run_dir(Path.cwd())) / "model"
