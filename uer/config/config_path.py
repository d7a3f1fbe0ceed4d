"""``model.config_path``: the original toolkit's ``--config_path``, a JSON file of model sizes.

``python main.py ... model.config_path=models/bert_base_config.json`` takes the sizes from
the file (the repository's ``models/`` holds the original's files), so the original's
commands translate flag for flag.  Its keys are ``model.*`` keys (``emb_size``,
``hidden_size``, ``feedforward_size``, ``heads_num``, ``layers_num``, ``dropout``,
``hidden_act``, ``kernel_size``, ``block_size`` ...), plus what the original's synthesizer
file adds: ``seq_length`` (``model.max_seq_length``), ``synt_type`` (``encoder.synt_type``),
``vocab_path`` (``tokenizer.vocab_path``) and ``encoder``, which must be the encoder chosen.

The file's values replace the composed ones (the ``size=`` preset's).  In the original the
file also won over the command line (``--dropout 0.3`` was overwritten by the file's
``dropout``); here a key given on the command line or in the ``experiment=`` preset that
differs from the file is an error naming both, so no setting is dropped silently.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from uer.config.model_size import ModelSizeConfig
from uer.config.overrides import chosen_keys
from uer.errors import UerError

log = logging.getLogger("uer.config")

RENAMED = {"seq_length": "model.max_seq_length", "synt_type": "encoder.synt_type",
           "vocab_path": "tokenizer.vocab_path"}
# The original's --encoder names -> our encoder types.
ENCODERS = {"bert": "transformer", "gpt": "transformer", "synt": "synt", "attn": "attn", "lstm": "lstm",
            "gru": "gru", "bilstm": "bilstm", "cnn": "cnn", "gatedcnn": "gatedcnn", "rcnn": "rcnn", "crnn": "crnn"}


def apply_config_path(cfg: DictConfig, overrides: Iterable[str]) -> None:
    """Set the keys ``cfg.model.config_path``'s file names (see the module docstring); nothing when it is null."""
    model = cfg.get("model")
    path = model.get("config_path") if model is not None else None
    if not path:
        return
    settings = _read(Path(path))
    chosen = chosen_keys(overrides)[1]
    applied = []
    for name, value in settings.items():
        if name == "encoder":
            _check_encoder(cfg, path, value)
            continue
        key = _key(cfg, path, name)
        node, _, field = key.rpartition(".")
        if node not in cfg or field not in cfg[node]:
            continue  # e.g. synt_type with another encoder, as the original ignored it
        current = OmegaConf.select(cfg, key)
        if key in chosen and current != value:
            raise UerError(f"{key}={current} but model.config_path={path} sets {name}={value}; drop one of them "
                           "(the original toolkit let the file win)")
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise UerError(f"{path}: {name}={value!r} cannot be {key} ({type(err).__name__}); fix the file") from None
        applied.append(f"{key}={value}")
    log.info("model.config_path=%s sets %s", path, ", ".join(applied))


def _read(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UerError(f"model.config_path={path} not found; give an original toolkit's model config, e.g. "
                       "models/bert_base_config.json") from None
    except (OSError, ValueError) as err:
        raise UerError(f"model.config_path={path} is not a JSON file ({err}); give an original toolkit's model "
                       "config, e.g. models/bert_base_config.json") from None
    if not isinstance(settings, dict):
        raise UerError(f"model.config_path={path} is not a JSON object of model settings")
    return settings


def _key(cfg: DictConfig, path, name: str) -> str:
    sizes = {f.name for f in dataclasses.fields(ModelSizeConfig)} - {"config_path", "layernorm"}
    if name in sizes:
        return f"model.{name}"
    if name in RENAMED:
        return RENAMED[name]
    known = sorted(sizes | set(RENAMED) | {"encoder"})
    raise UerError(f"model.config_path={path} sets {name!r}, which is not a model setting; the file may set: "
                   f"{', '.join(known)}")


def _check_encoder(cfg: DictConfig, path, name: str) -> None:
    encoder = cfg.get("encoder")
    if encoder is not None and ENCODERS.get(name, name) != encoder.get("type"):
        raise UerError(f"model.config_path={path} is a config for encoder {name}, but the run has encoder "
                       f"{encoder.get('type')}; add encoder={name if name in ENCODERS else '...'}")
