"""This project's checkpoint: one ``.pt`` file that describes itself.

A checkpoint holds the model weights, the resolved config that built the model
(embedding, encoder, target, sizes, tokenizer), the vocabulary identity, and the trainer
state (optimizer, scheduler, step, RNG, data position) so that ``resume=true`` continues
exactly.  Only tensors and plain Python values are stored, so loading uses
``torch.load(weights_only=True)`` and never unpickles arbitrary objects.  Writes go to a
temporary file in the same directory and are renamed into place, so a crash mid-write
never leaves a truncated checkpoint under the real name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from uer.errors import UerError
from uer.io.atomic import atomic_write

FORMAT = "uer-checkpoint"
VERSION = 1
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle), binary=True)


def save_checkpoint(path, *, model_state, config: dict, vocab: dict, trainer: dict | None) -> None:
    atomic_torch_save(
        {"format": FORMAT, "version": VERSION, "model": model_state, "config": config, "vocab": vocab, "trainer": trainer},
        path,
    )


def safe_torch_load(path, what: str):
    """``torch.load(weights_only=True)`` on CPU; a missing, truncated, corrupt or unsafe file is one
    clear line naming ``what`` (e.g. "checkpoint") and the path."""
    path = Path(path)
    if not path.is_file():
        raise UerError(f"{what} {path} not found; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt/unsafe files
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UerError(f"{what} {path} cannot be read ({first_line}); it is corrupt or not a torch file") from None


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is a clear error."""
    payload = safe_torch_load(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UerError(
            f"checkpoint {path} is not a uer checkpoint (no '{FORMAT}' marker); "
            "for an original UER-format .bin file give a path ending in .bin"
        )
    if payload.get("version", 0) > VERSION:
        raise UerError(f"checkpoint {path} has format version {payload['version']}; this uer reads up to {VERSION}")
    return payload


def step_checkpoints(directory) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_N.pt`` in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = STEP_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def checkpoint_path(directory, step: int) -> Path:
    return Path(directory) / f"step_{step}.pt"
