"""Tools: converters and the original toolkit's scripts, one registered function each.

``python main.py stage=tool tool=NAME tool.KEY=VALUE ...`` runs ``TOOLS.get(NAME)(cfg)``
(``conf/tool/NAME.yaml`` sets ``tool.name`` and the tool's defaults).  Every module of
this package may register tools; they are imported on first use, so a new tool is a new
module plus its YAML file.
"""

from __future__ import annotations

import importlib
import pkgutil

from uer.errors import UerError
from uer.registry import Registry

TOOLS: Registry = Registry("tool")


def tool_names() -> list[str]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return TOOLS.names()


def get_tool(name: str):
    tool_names()
    try:
        return TOOLS.get(name)
    except KeyError as err:
        raise UerError(f"tool={name}: {err.args[0]}") from None


def require(cfg, *keys: str) -> None:
    """Fail with one line naming every ``tool.KEY`` the chosen tool needs but was not given."""
    missing = [key for key in keys if cfg.tool[key] in (None, "", [])]
    if missing:
        given = " ".join(f"tool.{key}=..." for key in missing)
        raise UerError(f"tool={cfg.tool.name} needs {', '.join('tool.' + k for k in missing)}; add {given}")
