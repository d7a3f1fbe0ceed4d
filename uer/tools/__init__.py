"""Tools: converters and the original toolkit's scripts, one registered function each.

``python main.py tool=NAME tool.KEY=VALUE ...`` runs ``TOOLS.get(NAME)(cfg)``
(``conf/tool/NAME.yaml`` extends the tool's schema and sets its defaults).  Every module
of this package may register tools; they are imported on first use, so a new tool is a
new module plus its YAML file.  The dataclasses below are the pieces tool schemas are
made of: each tool declares exactly the keys it reads.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from uer.config.fields import at_least, setting
from uer.errors import UerError
from uer.registry import Registry

TOOLS: Registry = Registry("tool", group="tool")


@dataclass
class ToolConfig:
    type: str = setting(MISSING, "the tool (pick with tool=)")


@dataclass
class OutputFile:
    output_path: Optional[str] = setting(None, "the tool's output file; null = a file in the run directory")


@dataclass
class ModelInput:
    input_path: Optional[str] = setting(None, "the model: a .pt checkpoint (or a directory holding one), a Hugging "
                                              "Face model directory or an original UER .bin")


@dataclass
class TextInputs:
    text: Optional[str] = setting(None, "one input, given on the command line")
    test_path: Optional[str] = setting(None, "a UTF-8 file of inputs, one a line")


@dataclass
class Batching:
    seq_length: int = setting(128, "longest input in tokens (longer ones are cut)", bounds=at_least(1))
    batch_size: int = setting(32, "inputs per batch", bounds=at_least(1))


@dataclass
class ModelToolConfig(OutputFile, ModelInput, ToolConfig):
    """A tool that reads a model and writes one file."""


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
        raise UerError(f"tool={cfg.tool.type} needs {', '.join('tool.' + k for k in missing)}; add {given}")
