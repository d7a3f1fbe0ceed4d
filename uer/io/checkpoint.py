"""This project's checkpoint: one ``.pt`` file that describes itself.

A checkpoint (format version 2) holds:

* ``model``: the weights;
* ``config``: the full resolved config of the run that wrote it -- every group (sizes,
  tokenizer, embedding, encoder, target or task, hardware, optimizer, schedule) and the
  stage's training settings -- with what the run learnt filled in (``task.labels_num``);
* ``tokenizer``: the tokenizer itself (settings plus the token list, or the
  SentencePiece model's bytes), so no vocabulary file is needed to use the checkpoint;
* ``vocab``: the vocabulary identity (hashes that decide the ids), compared with datasets
  and other tokenizers;
* ``task_info``: what fine-tuning learnt from its training file (e.g. NER's tag set);
* ``trainer``: optimizer, schedule, step, RNG and data position, so ``resume=true``
  continues exactly (pre-training's ``step_N.pt``, fine-tuning's ``last.pt``; a
  fine-tuned ``best.pt`` has none).

Every checkpoint written since carries a ``checksum``: sha256 over every tensor (its name,
dtype, shape and bytes) and every value of the payload, in a fixed order.  Each load
recomputes it (:func:`check_payload`), so a file damaged after it was written -- torch does
not check its archive's CRCs -- is one line naming it instead of weights that load and
produce garbage; checkpoints written before checksums load unchecked.  Weights holding NaN
or inf are refused on load too, naming the first such tensor, unless the caller allows them
(``allow_nonfinite_weights=true``: inspecting a broken model).

Version 1 checkpoints (model nodes only, vocabulary by path) still load.  Only tensors and
plain Python values are stored, so loading uses ``torch.load(weights_only=True)`` and
never unpickles arbitrary objects.  Writes go to a temporary file in the same directory
and are renamed into place, so a crash mid-write never leaves a truncated checkpoint
under the real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from uer.errors import UerError, reason
from uer.io.atomic import atomic_write
from uer.tokenizers import build_tokenizer, tokenizer_from_state, tokenizer_state

FORMAT = "uer-checkpoint"
VERSION = 2
# The config nodes that decide a model's architecture and input ids.
MODEL_NODES = ("model", "tokenizer", "embedding", "encoder", "decoder", "target")
UER_WORD = "embedding.word_embedding.weight"  # the word embedding of an original UER model file
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
CHECKSUM = "checksum"
HASH_THREADS = min(8, os.cpu_count() or 1)  # hashlib lets go of the GIL: tensors are hashed in parallel

log = logging.getLogger("uer.checkpoint")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle), binary=True)


def save_checkpoint(path, *, model_state, config: dict, tokenizer, trainer: dict | None,
                    task_info: dict | None = None) -> None:
    """Write a checkpoint of ``model_state`` trained by the run ``config`` (resolved, plain) with ``tokenizer``;
    weights that are not finite are never written."""
    broken = first_nonfinite(model_state)
    if broken is not None:
        raise UerError(f"not writing {path}: the model's {broken} holds nan or inf values (training diverged); "
                       "lower the learning rate or check the data")
    payload = {"format": FORMAT, "version": VERSION, "model": model_state, "config": config,
               "tokenizer": tokenizer_state(tokenizer, config["tokenizer"]), "vocab": tokenizer.identity(),
               "trainer": trainer}
    if task_info is not None:
        payload["task_info"] = task_info
    atomic_torch_save(sealed(payload), path)


def sealed(payload: dict) -> dict:
    """``payload`` with its checksum (:func:`payload_digest`), as :func:`save_checkpoint` writes it."""
    return {**payload, CHECKSUM: {"sha256": payload_digest(payload)}}


def first_nonfinite(state: dict) -> str | None:
    """The name of the first floating tensor of ``state`` holding NaN or inf, if any."""
    return next((name for name, tensor in state.items() if isinstance(tensor, torch.Tensor)
                 and tensor.is_floating_point() and not _finite(tensor)), None)


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value of ``tensor`` is finite.  A NaN or inf makes the sum NaN or inf, so a finite sum (one
    cheap reduction) settles it; an infinite sum of finite values (overflow) is checked value by value."""
    if bool(torch.isfinite(tensor.detach().sum())):
        return True
    return bool(torch.isfinite(tensor).all())


def refuse_nonfinite(state: dict, path, allow: bool = False) -> None:
    """A UerError naming ``path`` and its first tensor that holds NaN or inf; with ``allow``, a warning."""
    broken = first_nonfinite(state)
    if broken is None:
        return
    if allow:
        log.warning("model %s holds NaN or inf values in %s; loaded anyway (allow_nonfinite_weights=true): its "
                    "outputs are not meaningful", path, broken)
        return
    raise UerError(f"model {path} holds NaN or inf values in {broken}: it is broken (train again from an earlier "
                   "checkpoint); to load it anyway for inspection pass allow_nonfinite_weights=true")


def payload_digest(payload: dict) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and every other value of ``payload`` but its checksum,
    in the order of their names (:func:`_leaves`)."""
    tensors, values = {}, {}
    _leaves({key: value for key, value in payload.items() if key != CHECKSUM}, "", tensors, values)
    names = sorted(tensors)
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = dict(zip(names, pool.map(lambda name: _tensor_digest(name, tensors[name]), names)))
    total = hashlib.sha256()
    for name in sorted(set(tensors) | set(values)):
        total.update(digests[name] if name in digests else f"{name}={values[name]!r}".encode("utf-8"))
    return total.hexdigest()


def _leaves(value, name: str, tensors: dict, values: dict) -> None:
    """Every tensor and plain value inside ``value`` by its path of keys (``/'model'/'backbone.x'``, ``[0]``)."""
    if isinstance(value, torch.Tensor):
        tensors[name] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _leaves(item, f"{name}/{key!r}", tensors, values)
    elif isinstance(value, (list, tuple)):
        values[name] = type(value).__name__  # a list and a tuple of the same items differ
        for index, item in enumerate(value):
            _leaves(item, f"{name}[{index}]", tensors, values)
    elif isinstance(value, (set, frozenset)):  # iteration order differs between processes: sort
        values[name] = f"{type(value).__name__}{sorted(repr(item) for item in value)}"
    else:
        values[name] = value


def _tensor_digest(name: str, tensor: torch.Tensor) -> bytes:
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    digest = hashlib.sha256(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode("utf-8"))
    digest.update(memoryview(data))
    return digest.digest()


def safe_torch_load(path, what: str):
    """``torch.load(weights_only=True)`` on CPU; a missing, truncated, corrupt or unsafe file is one
    clear line naming ``what`` (e.g. "checkpoint") and the path."""
    path = Path(path)
    if not path.is_file():
        raise UerError(f"{what} {path} not found; check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt/unsafe files
        refused = re.search(r"unsupported GLOBAL (\S+)", str(err)) if "Weights only load failed" in str(err) else None
        if refused:
            raise UerError(f"{what} {path} cannot be read: it holds Python objects ({refused.group(1)}), not only "
                           "tensors and plain values, and those are never unpickled (they could run code)") from None
        raise UerError(f"{what} {path} cannot be read ({reason(err)}); it is corrupt or not a torch file") from None


def load_checkpoint(path, allow_nonfinite: bool = False) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and check it (:func:`check_payload`); anything else is
    a clear error."""
    payload = safe_torch_load(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UerError(f"checkpoint {path} is not a uer checkpoint (no '{FORMAT}' marker): it holds "
                       f"{describe_content(payload)}; an original UER model file is read where a model can start "
                       "from (pretrained_model_path, tool.input_path)")
    return check_payload(payload, path, allow_nonfinite)


def check_payload(payload: dict, path, allow_nonfinite: bool = False) -> dict:
    """``payload`` if this uer can read its format version, it matches its checksum (when it has one) and its
    weights are finite (unless ``allow_nonfinite``)."""
    if payload.get("version", 0) > VERSION:
        raise UerError(f"checkpoint {path} has format version {payload['version']}; this uer reads up to {VERSION}")
    stored = payload.get(CHECKSUM)
    if stored is None:
        log.debug("checkpoint %s has no checksum (written by an older uer); it is loaded unchecked", path)
    elif not isinstance(stored, dict) or stored.get("sha256") != payload_digest(payload):
        raise UerError(f"checkpoint {path} is corrupt: its contents do not match the checksum written with them (the "
                       "file was damaged after it was saved); restore it from a copy or use another checkpoint")
    model = payload.get("model")
    refuse_nonfinite(model if isinstance(model, dict) else {}, path, allow_nonfinite)
    return payload


def describe_content(content) -> str:
    """A few words on what a loaded model file holds, for error messages."""
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return "a uer checkpoint"
    if isinstance(content, dict) and UER_WORD in content and isinstance(content[UER_WORD], torch.Tensor):
        return "an original UER model file (a flat dict of tensors)"
    if isinstance(content, dict):
        keys = list(content)[:3]
        if not keys:
            return "an empty dict"
        tensors = all(isinstance(value, torch.Tensor) for value in content.values())
        kind = "a dict of tensors without " + UER_WORD if tensors else "a dict"
        return f"{kind}, with keys {keys}{' ...' if len(content) > 3 else ''}"
    return f"a {type(content).__name__}"


def stored_tokenizer_config(payload: dict) -> dict:
    """The tokenizer settings a checkpoint records (version 1: in its config)."""
    if payload.get("tokenizer") is not None:
        return dict(payload["tokenizer"]["config"])
    return dict((payload.get("config") or {}).get("tokenizer") or {})


def checkpoint_tokenizer(payload: dict, path):
    """The tokenizer a checkpoint was trained with: its stored copy, or (version 1) the files its
    config names, checked to give the ids it was trained with."""
    if payload.get("tokenizer") is not None:
        return tokenizer_from_state(payload["tokenizer"], str(path))
    stored = stored_tokenizer_config(payload)
    if not stored:
        raise UerError(f"checkpoint {path} records no tokenizer; it was not written by this project")
    try:
        tokenizer = build_tokenizer(stored)
    except UerError as err:
        raise UerError(f"checkpoint {path} (an older checkpoint, without its vocabulary inside) needs its vocabulary "
                       f"file: {err}; run from the directory it was trained in, or re-save it with a current uer "
                       "(stage=tool tool=convert tool.input_format=uer_ckpt tool.output_format=uer_ckpt)") from None
    if tokenizer.identity() != payload.get("vocab"):
        raise UerError(f"checkpoint {path} was trained with another vocabulary than {tokenizer.vocab.path} holds now "
                       f"(the file changed since); restore that file")
    return tokenizer


def load_stored_weights(module: torch.nn.Module, state: dict, path, changed_since: str) -> None:
    """``module.load_state_dict(state)``; a mismatch is one line naming the first tensors that differ
    (torch's own message starts with a header line that names none)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        if len(detail) > 300:
            detail = detail[:300] + " ..."
        raise UerError(f"checkpoint {path} does not fit the model its config describes ({detail}); it was modified "
                       f"after {changed_since}") from None


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
