"""Where things are: the bundled config tree and the rule for where a run writes its model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from uer.runtime import run_dir

CONF = Path(__file__).resolve().parents[1] / "conf"


def model_dir(cfg: DictConfig, run_directory: Path | None = None) -> Path:
    """Where a run writes its model: ``output_model_path``, else ``model/`` in the run directory
    (``run_directory``, default Hydra's output directory of this run)."""
    if cfg.get("output_model_path"):
        return Path(cfg.output_model_path)
    return (run_directory if run_directory is not None else run_dir(Path.cwd())) / "model"
