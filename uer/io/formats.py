"""Which kind of model a path holds, decided by its content, not its name.

Three kinds are read: this project's checkpoint (a dict with the ``uer-checkpoint`` marker,
:mod:`uer.io.checkpoint`); a Hugging Face model directory (``config.json``, weights, tokenizer
files), read as the same checkpoint payload (:mod:`uer.io.hf_directory`); and the original
UER-py toolkit's ``.bin`` (a flat dict of name -> tensor with UER's names, whatever the file is
called: ``model.bin-20000`` too; names that all start with ``module.``, as a multi-GPU wrapper
saves them, are read without it).  Anything else is one error line saying what the file holds
instead (a Hugging Face weights file without its directory, which ``tool=convert`` reads, or
something else).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from uer.errors import UerError
from uer.io.checkpoint import FORMAT, UER_WORD, check_payload, describe_content, refuse_nonfinite, safe_torch_load
from uer.io.hf_directory import is_hf_directory, read_hf_directory
from uer.io.hf_format import is_safetensors
from uer.io.hf_hub import model_location

logger = logging.getLogger(__name__)

CHECKPOINT = "pt"
ORIGINAL = "bin"
MULTI_GPU = "module."  # torch's DataParallel/DDP prefix (the original's scripts/multi_single_convert.py)
CONVERT_HF = ("give its model directory (config.json, weights and tokenizer files) instead, or convert it: "
              "tool=convert tool.input_format=hf tool.output_format=uer_ckpt")


def read_model_file(path, what: str = "model file", allow_nonfinite: bool = False) -> tuple[str, dict]:
    """``(kind, content)``: ``("pt", checkpoint payload)`` -- of a uer checkpoint or a Hugging Face model
    directory (or hub id, :mod:`uer.io.hf_hub`) -- or ``("bin", UER-named state dict)``; weights holding NaN or
    inf are refused unless ``allow_nonfinite``, a checkpoint that fails its checksum always."""
    path = model_location(path, what)
    if is_hf_directory(path):
        payload = read_hf_directory(path)
        refuse_nonfinite(payload["model"], path, allow_nonfinite)
        return CHECKPOINT, payload
    if Path(path).is_file() and is_safetensors(Path(path)):
        raise UerError(f"{what} {path} is a safetensors file (Hugging Face weights), neither a uer checkpoint nor an "
                       f"original UER model file; {CONVERT_HF}")
    content = safe_torch_load(path, what)
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return CHECKPOINT, check_payload(content, path, allow_nonfinite)
    if isinstance(content, dict) and content and all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items()):
        if all(key.startswith(MULTI_GPU) for key in content):
            content = {key[len(MULTI_GPU):]: value for key, value in content.items()}
            logger.info("%s %s: names start with %r (saved from a multi-GPU wrapper); read without it", what, path,
                        MULTI_GPU)
        if UER_WORD in content:
            return ORIGINAL, _finite(content, path, allow_nonfinite)
        if any(key.endswith("embeddings.word_embeddings.weight") for key in content):
            raise UerError(f"{what} {path} is a Hugging Face BERT state dict, neither a uer checkpoint nor an original "
                           f"UER model file; {CONVERT_HF}")
    raise UerError(f"{what} {path} is neither a uer checkpoint nor an original UER model file: it holds "
                   f"{describe_content(content)}; give a .pt written by this project or a .bin of the original toolkit")


def _finite(state: dict, path, allow: bool) -> dict:
    """``state`` (an original UER file's weights) when every tensor is finite, or when ``allow`` says so."""
    refuse_nonfinite(state, path, allow)
    return state
