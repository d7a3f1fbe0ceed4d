"""Which kind of model file a path holds, decided by its content, not its name.

Two kinds are read: this project's checkpoint (a dict with the ``uer-checkpoint`` marker,
:mod:`uer.io.checkpoint`) and the original UER-py toolkit's ``.bin`` (a flat dict of
name -> tensor, whatever the file is called: ``model.bin-20000`` too).
"""

from __future__ import annotations

import torch

from uer.errors import UerError
from uer.io.checkpoint import FORMAT, check_payload, safe_torch_load

CHECKPOINT = "pt"
ORIGINAL = "bin"


def read_model_file(path, what: str = "model file") -> tuple[str, dict]:
    """``(kind, content)``: ``("pt", checkpoint payload)`` or ``("bin", UER-named state dict)``."""
    content = safe_torch_load(path, what)
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return CHECKPOINT, check_payload(content, path)
    if isinstance(content, dict) and content and all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items()):
        return ORIGINAL, content
    raise UerError(f"{what} {path} is neither a uer checkpoint nor an original UER model file: it holds "
                   f"{_describe(content)}; give a .pt written by this project or a .bin of the original toolkit")


def is_original_uer_file(path) -> bool:
    """True when ``path`` holds an original UER model (a flat dict of tensors)."""
    return read_model_file(path)[0] == ORIGINAL


def _describe(content) -> str:
    if isinstance(content, dict):
        keys = list(content)[:3]
        return f"a dict with keys {keys}{' ...' if len(content) > 3 else ''}" if keys else "an empty dict"
    return f"a {type(content).__name__}"
