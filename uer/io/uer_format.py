"""Read and write the original UER-py ``.bin`` layout (see shared FORMATS.md).

Our module names were chosen to equal UER's, so the mapping is a few local renames and
needs no config:

* Backbone keys: our models hold embedding + encoder under ``backbone.`` (a bare
  ``Backbone`` has no prefix); UER files have none.  ``backbone_prefix`` says which.
* Attention: our fused ``self_attn.qkv`` (3H, H) is UER's
  ``self_attn.linear_layers.{0,1,2}`` (query, key, value) stacked along dim 0; the same
  for the ``attn`` encoder's layer list ``encoder.self_attn.L``.
* RNN encoders need no renaming: ``encoder.rnn.*`` (``lstm``, ``gru``, ``rcnn``,
  ``crnn``) and ``encoder.rnn_forward.*``/``encoder.rnn_backward.*`` (``bilstm``,
  ``bigru``) hold torch's LSTM/GRU parameter names, as UER's files do.
* LayerNorm ``weight``/``bias`` are UER's ``gamma``/``beta``.  Every LayerNorm of ours is
  named ``layer_norm``, ``layer_norm_1`` or ``layer_norm_2``, which is how they are found.
* Layer index and ALBERT sharing are already in the names: ``encoder.transformer.L.*``
  for a layer list, ``encoder.transformer.*`` for the one shared layer;
  ``encoder.linear`` is the factorized-embedding projection in both layouts.
* Keys we do not know (fine-tuning heads such as ``output_layer_1``) pass unchanged.

Tied weights: ``state_dict()`` lists a tied parameter under each of its names, so written
files carry ``target.mlm_linear_2.weight`` (or ``target.output_layer.weight``)
explicitly, as UER's do.  On loading, a tied group is satisfied by any one of its names;
if a file has several, the first name in the model's order (the word embedding) wins, and
a differing one is reported as not used (a run starting from an original file unties the
model instead: :mod:`uer.config.original_file`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from uer.errors import UerError, where
from uer.io.checkpoint import atomic_torch_save
from uer.io.formats import ORIGINAL, read_model_file
from uer.io.uer_names import BACKBONE_PREFIX, from_uer_state_dict, to_uer_state_dict  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DataParallel/DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_uer_bin(model: nn.Module, path, backbone_prefix: str = BACKBONE_PREFIX) -> None:
    """Write ``model``'s weights as a UER-format ``.bin`` (CPU tensors, atomic replace)."""
    state = to_uer_state_dict(unwrap(model).state_dict(), backbone_prefix)
    atomic_torch_save({key: tensor.detach().cpu() for key, tensor in state.items()}, path)


def load_uer_bin(path) -> StateDict:
    """Read an original UER model file, whatever its name (UER names, CPU tensors); anything else,
    or any problem, is a :class:`UerError` saying what the file holds."""
    kind, content = read_model_file(path)
    if kind != ORIGINAL:
        raise UerError(f"model file {path} is this project's checkpoint, not an original UER model file")
    return content


WORD_EMBEDDING = "backbone.embedding.word_embedding.weight"


@dataclass
class LoadReport:
    """What a partial load did: file tensors loaded, model tensors the file did not fill (they keep
    their initialisation), file tensors with no place in the model, and file tensors the model
    could not take because it ties them to another one they differ from."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    untied: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            parts.append(f"initialised, not in the file ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"not used, no place in this model ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.untied:
            parts.append(f"not used, tied in this model to a tensor it differs from in the file: "
                         f"{', '.join(self.untied)}")
        return "; ".join(parts)


def load_into_model(model: nn.Module, state_dict: StateDict, source: Optional[str] = None) -> LoadReport:
    """Copy matching tensors of ``state_dict`` (our names) into ``model``.

    Every tensor the load did not use and every model tensor it left initialised is listed
    (returned, and logged at warning level); a shape clash is a :class:`UerError` naming the
    key and both shapes.  ``source`` (a file name) is used in messages.
    """
    model = unwrap(model)
    expected = model.state_dict(keep_vars=True)
    aliases = _tied_names(expected)
    state = dict(state_dict)
    untied = []
    for names in {tuple(group) for group in aliases.values() if len(group) > 1}:
        present = [name for name in names if name in state]
        for name in present[1:]:
            kept = state[present[0]]
            if state[name].shape != kept.shape or not torch.equal(state[name], kept):
                untied.append(name)
            del state[name]
    prefix = f"{where(source)}: " if source is not None else ""
    for key, tensor in state.items():
        if key == WORD_EMBEDDING and key in expected and len(tensor) != len(expected[key]):
            raise UerError(f"{prefix}its word embedding has {len(tensor)} rows, but this run's vocabulary has "
                           f"{len(expected[key])} tokens: the model was trained with another vocabulary; give the "
                           f"tokenizer the vocabulary file it was trained with (tokenizer.vocab_path=...)")
        if key in expected and tensor.shape != expected[key].shape:
            raise UerError(
                f"{prefix}{key} has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(expected[key].shape)} in the model; check the model size settings"
            )
    report = LoadReport(
        loaded=[key for key in state if key in expected],
        missing=[key for key in expected if not any(name in state for name in aliases[key])],
        unexpected=[key for key in state if key not in expected],
        untied=sorted(untied),
    )
    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    noteworthy = report.missing or report.unexpected or report.untied
    logger.log(logging.WARNING if noteworthy else logging.INFO, "%s%s", prefix, report)
    return report


def _tied_names(state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Each key -> every key naming the same tensor (itself included), in model order."""
    groups: dict[int, list[str]] = {}
    for key, tensor in state.items():
        groups.setdefault(id(tensor), []).append(key)
    return {key: groups[id(tensor)] for key, tensor in state.items()}
