"""stage=tool: run one converter or script (``tool=NAME``)."""

from __future__ import annotations

from omegaconf import DictConfig

from uer.errors import UerError
from uer.tools import get_tool, tool_names


def run(cfg: DictConfig):
    if not cfg.tool.name:
        raise UerError(f"stage=tool needs tool=NAME; choose one of: {', '.join(tool_names())}")
    return get_tool(cfg.tool.name)(cfg)
