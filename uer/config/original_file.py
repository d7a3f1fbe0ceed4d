"""What an original UER-py model file decides about the model that reads it.

The original toolkit's ``.bin`` holds weights only; the composed config describes the
model (``embedding=``, ``encoder=``, ``size=`` ...).  Two settings follow from the file
itself, so a run starting from one takes them unless the user chose otherwise:

* ``model.layernorm=uer`` when it is null (the default): the original toolkit computes
  every LayerNorm with its own formula (:mod:`uer.models.layer_norm`), so that is the
  model its files hold;
* ``target.tie_weights=false`` when the file's output matrix (``target.mlm_linear_2.weight``
  or ``target.output_layer.weight``) is not its word embedding: the original's
  ``pretrain.py`` ties them only with ``--tie_weights``, and a tied model would drop it;
  unless ``target.tie_weights=true`` was given on the command line or in the
  ``experiment=`` preset.

Each decision is logged once; a user's choice that departs from the file is kept, with a
warning that says what it changes.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch
from omegaconf import DictConfig

from uer.config.overrides import chosen_keys

log = logging.getLogger("uer.config")

WORD = "embedding.word_embedding.weight"
OUTPUT_MATRICES = ("target.mlm_linear_2.weight", "target.output_layer.weight")


def untied_outputs(state: dict) -> list[str]:
    """The output matrices of a UER-named ``state`` that are not its word embedding."""
    word = state.get(WORD)
    if word is None:
        return []
    return [name for name in OUTPUT_MATRICES
            if name in state and (state[name].shape != word.shape or not torch.equal(state[name], word))]


def adopt_original_file(cfg: DictConfig, path, state: dict, overrides: Iterable[str]) -> None:
    """Set ``cfg``'s LayerNorm formula and weight tying from the original file ``path`` (``state``: UER names)."""
    _layernorm(cfg, path)
    _tying(cfg, path, state, chosen_keys(overrides)[1])


def _layernorm(cfg: DictConfig, path) -> None:
    kind = cfg.model.layernorm
    if kind is None:
        cfg.model.layernorm = "uer"
        log.info("%s is an original UER-py file: model.layernorm=uer, the original's LayerNorm (unbiased std, eps "
                 "outside the square root); pass model.layernorm=standard for torch's", path)
    elif kind != "uer":
        log.warning("%s is an original UER-py file; it is read with model.layernorm=%s as asked, but the original "
                    "toolkit computes its own LayerNorm (model.layernorm=uer), so outputs differ from the original's",
                    path, kind)


def _tying(cfg: DictConfig, path, state: dict, chosen: set[str]) -> None:
    target = cfg.get("target")
    if target is None or "tie_weights" not in target or not target.tie_weights:
        return
    untied = untied_outputs(state)
    if not untied:
        return
    if "target.tie_weights" in chosen:
        log.warning("%s: %s is not the word embedding, but target.tie_weights=true ties them, so the file's matrix "
                    "is not used", path, ", ".join(untied))
        return
    target.tie_weights = False
    log.info("%s: %s is not its word embedding: target.tie_weights=false, so the file's matrix is used",
             path, ", ".join(untied))
