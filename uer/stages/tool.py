"""stage=tool: run one converter or script (``tool=NAME``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig

from uer.config.fields import setting
from uer.config.run import BackboneGroups, InspectsWeights, RunConfig, stage_key, stage_root
from uer.io.outputs import FILE, Output, path_keys
from uer.stages.common import model_inputs
from uer.runtime import HardwareConfig
from uer.tools import get_tool


@stage_root("tool")
@dataclass
class ToolRun(BackboneGroups, InspectsWeights, RunConfig):
    """The model groups describe an original UER .bin (our checkpoints describe themselves)."""

    stage: str = stage_key("tool")
    target: Any = setting(MISSING, "the pre-training target of an original UER .bin (target=)")
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    tool: Any = setting(MISSING, "the tool (tool=)")


def outputs(cfg: DictConfig) -> list[Output]:
    """``tool.output_path`` of the tools that have one (without it, a tool writes into the run directory)."""
    path = cfg.tool.get("output_path")
    return [Output("tool.output_path", Path(path), FILE)] if path else []


def input_keys(cfg: DictConfig) -> list[str]:
    """Every ``tool.*_path(s)`` setting but the output (so a new tool's inputs are declared by their names), and the
    composed model's files."""
    return [*path_keys(cfg, "tool", skip=("tool.output_path",)), *model_inputs(cfg)]


def run(cfg: DictConfig):
    return get_tool(cfg.tool.type)(cfg)
