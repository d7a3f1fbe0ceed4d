"""What the model scripts share: read a model file, rebuild the model, find its tokenizer, write outputs.

A model file is either

* this project's checkpoint (a ``.pt``, or a directory holding ``step_N.pt``/``best.pt``):
  it describes itself -- its architecture replaces the composed one (an explicit
  conflicting override is an error, :mod:`uer.config.overrides`) and it carries its
  tokenizer; or
* an original UER-py model file (a flat dict of tensors, whatever its name): the
  architecture comes from the composed config (``embedding=``, ``encoder=``, ``target=``,
  ``size=`` ...), with the original's LayerNorm and the file's weight tying
  (:mod:`uer.config.original_file`), and the tokenizer from ``tokenizer.*``; the
  vocabulary size is the word embedding's row count.

Fine-tuned checkpoints (they store a ``task``) give their backbone only: no pre-training
target.  Outputs are written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from uer.config.original_file import adopt_original_file
from uer.config.overrides import adopt_architecture, command_line_overrides
from uer.errors import UerError
from uer.io.atomic import atomic_write
from uer.io.checkpoint import MODEL_NODES, checkpoint_tokenizer, load_stored_weights, step_checkpoints
from uer.io.formats import CHECKPOINT, read_model_file
from uer.io.hf_directory import is_hf_directory
from uer.io.hf_hub import model_location
from uer.io.uer_format import WORD_EMBEDDING, from_uer_state_dict, load_into_model
from uer.models import Backbone, Seq2seqModel, build_backbone, build_model
from uer.runtime import configure_threads, resolve_device, run_dir
from uer.tokenizers import build_tokenizer

logger = logging.getLogger("uer.tools")

BEST = "best.pt"


@dataclass
class LoadedModel:
    """A model rebuilt from a file, in eval mode on the configured device."""

    path: Path
    kind: str  # "pt" (ours) or "bin" (original UER)
    backbone: Backbone
    target: Optional[nn.Module]  # None for fine-tuned checkpoints
    config: dict  # plain dicts: embedding, encoder, target (if any), tokenizer
    vocab_size: int
    device: torch.device
    tokenizer: object = None  # a VocabTokenizer when asked for
    seq2seq: Optional[Seq2seqModel] = None  # the whole model of an encoder-decoder checkpoint (its decoder too)
    missing: list[str] = field(default_factory=list)  # model keys the file did not fill (.bin)

    @property
    def max_length(self) -> Optional[int]:
        """The longest input the model reads: its position embedding's size; None for an embedding without
        positions (an RNN or CNN encoder knows the order itself and reads any length)."""
        positions = self.config["embedding"].get("max_seq_length")
        return int(positions) if positions is not None else None

    def require_target(self, types: tuple[str, ...], tool: str) -> nn.Module:
        """The pre-training target, which must be one of ``types``; else one line saying what to give."""
        target_type = (self.config.get("target") or {}).get("type")
        if self.target is None:
            raise UerError(f"model {self.path} is a fine-tuned model without its pre-training head; tool={tool} "
                           f"needs a pre-trained model with target={' or '.join(types)}")
        if target_type not in types:
            raise UerError(f"model {self.path} has target={target_type} but tool={tool} needs target="
                           f"{' or '.join(types)}")
        absent = [key for key in self.missing if key.startswith("target.")]
        if absent:
            raise UerError(f"model file {self.path} has no weights for {absent[0]} (target={target_type}); give a "
                           f"model saved with its {target_type} head or compose the target it was trained with")
        return self.target


def model_file(path, key: str = "tool.input_path") -> Path:
    """``path`` as a model file: a directory means its ``best.pt`` or newest ``step_N.pt``, else itself when it is
    a Hugging Face model directory; a hub id (:mod:`uer.io.hf_hub`) is its local snapshot directory."""
    if not path:
        raise UerError(f"{key} is not set; give a model file (.pt checkpoint or UER .bin)")
    path = model_location(str(path), key)  # a hub id: its local snapshot directory
    if path.is_dir():
        if (path / BEST).is_file():
            return path / BEST
        steps = step_checkpoints(path)
        if not steps and is_hf_directory(path):  # a Hugging Face model directory is read as a checkpoint
            return path
        if not steps:
            raise UerError(f"{key}={path} is a directory with no {BEST} or step_N.pt checkpoint, nor a Hugging Face "
                           "model directory (config.json); give a model file")
        return steps[-1][1]
    if not path.is_file():
        raise UerError(f"model file {path} ({key}) not found; check the path")
    return path


def read_state(path, allow_nonfinite: bool = False) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """The weights of a model file under our parameter names, and the checkpoint payload (None for a UER file)."""
    kind, content = read_model_file(path, allow_nonfinite=allow_nonfinite)
    if kind == CHECKPOINT:
        return content["model"], content
    return from_uer_state_dict(content), None


def load_model(cfg: DictConfig, path=None, *, key: str = "tool.input_path", with_tokenizer: bool = True,
               device: Optional[torch.device] = None, allow_nonfinite: Optional[bool] = None) -> LoadedModel:
    """Rebuild the model stored at ``path`` (default ``tool.input_path``), eval mode, on ``hardware.device``;
    weights holding NaN or inf are refused unless ``allow_nonfinite`` (default: ``allow_nonfinite_weights``).

    The tokenizer is found even when not asked for if the embedding reads each token's
    characters (``embedding.subencoder``): the model cannot be built without it."""
    configure_threads(cfg.hardware.num_threads)
    path = model_file(cfg.tool.input_path if path is None else path, key)
    device = device or resolve_device(cfg.hardware.device)
    allow = cfg.allow_nonfinite_weights if allow_nonfinite is None else allow_nonfinite
    kind, content = read_model_file(path, allow_nonfinite=allow)
    if kind == CHECKPOINT:
        state, payload = content["model"], content
    else:
        adopt_original_file(cfg, path, content, command_line_overrides())
        state, payload = from_uer_state_dict(content), None
    if WORD_EMBEDDING not in state:
        raise UerError(f"model file {path} has no {WORD_EMBEDDING.removeprefix('backbone.')}; it is not a "
                       "model of this toolkit")
    vocab_size = int(state[WORD_EMBEDDING].shape[0])
    missing: list[str] = []
    seq2seq = None
    if payload is not None:
        stored = dict(payload.get("config") or {})
        if "embedding" not in stored or "encoder" not in stored:
            raise UerError(f"checkpoint {path} stores no model config; it was not written by this toolkit")
        if payload.get("tokenizer") is not None:
            stored["tokenizer"] = payload["tokenizer"]["config"]
        adopt_architecture(cfg, stored, MODEL_NODES, path, command_line_overrides())
    tokenizer = model_tokenizer(cfg, path, vocab_size, payload) \
        if with_tokenizer or cfg.embedding.subencoder != "none" else None
    tokens = tokenizer.vocab.tokens if tokenizer is not None else None
    if payload is not None:
        config = _model_nodes(cfg, with_target="task" not in stored and "target" in stored)
        if "task" in stored:
            config["task"] = stored["task"]
        if stored.get("decoder") is not None:  # an encoder-decoder (pre-trained, or task=text2text): all of it
            config["decoder"] = stored["decoder"]
            config["target"] = stored["target"]
            module = seq2seq = build_model(cfg.embedding, cfg.encoder, stored["target"], vocab_size, tokens=tokens,
                                           decoder_cfg=stored["decoder"])
            backbone, target = seq2seq.backbone, seq2seq.target
        elif "target" not in config:
            backbone, target = build_backbone(cfg.embedding, cfg.encoder, vocab_size, tokens=tokens), None
            module: nn.Module = backbone
            unused = [key for key in state if not key.startswith("backbone.")]
            if unused:
                logger.warning("%s: not used, the tools take the backbone alone: %s", path, ", ".join(unused))
            state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        else:
            model = build_model(cfg.embedding, cfg.encoder, cfg.target, vocab_size, tokens=tokens)
            backbone, target, module = model.backbone, model.target, model
        load_stored_weights(module, state, path, "it was written")
    else:
        config = _model_nodes(cfg, with_target=True)
        model = build_model(cfg.embedding, cfg.encoder, cfg.target, vocab_size, tokens=tokens)
        missing = load_into_model(model, state, source=str(path)).missing
        backbone_missing = [k for k in missing if k.startswith("backbone.")]
        if backbone_missing:
            raise UerError(f"model file {path} has no weights for {backbone_missing[0].removeprefix('backbone.')}; "
                           "compose the architecture it was trained with (embedding=, encoder=, size=, model.*)")
        backbone, target = model.backbone, model.target
    backbone.to(device).eval()
    if target is not None:
        target.to(device).eval()
    if seq2seq is not None:
        seq2seq.to(device).eval()
    return LoadedModel(path=path, kind="bin" if payload is None else "pt", backbone=backbone, target=target,
                       config=config, vocab_size=vocab_size, device=device, missing=missing,
                       tokenizer=tokenizer if with_tokenizer else None, seq2seq=seq2seq)


def warn_word_embedding_alone(path, subencoder: str, result: str) -> None:
    """A tool that reads the word embedding matrix says so when the model adds characters' vectors to it."""
    if subencoder != "none":
        logger.warning("%s adds to each token's embedding a vector composed from its characters "
                       "(embedding.subencoder=%s); %s", path, subencoder, result)


def _model_nodes(cfg: DictConfig, with_target: bool) -> dict:
    nodes = ("embedding", "encoder", "tokenizer", "target") if with_target else ("embedding", "encoder", "tokenizer")
    return {node: OmegaConf.to_container(cfg[node], resolve=True) for node in nodes}


def model_tokenizer(cfg: DictConfig, path: Path, vocab_size: int, payload: Optional[dict]):
    """The tokenizer a checkpoint was trained with; for an original UER file, the composed one."""
    if payload is not None:
        return checkpoint_tokenizer(payload, path)
    tokenizer = build_tokenizer(cfg.tokenizer)
    if len(tokenizer.vocab) != vocab_size:
        raise UerError(f"model file {path} has {vocab_size} word embedding rows but vocab "
                       f"{tokenizer.vocab.path} has {len(tokenizer.vocab)} tokens; set tokenizer.vocab_path= to the "
                       "vocabulary the model was trained with")
    return tokenizer


# ----------------------------------------------------------------------------------- outputs


def output_file(cfg: DictConfig, default_name: str) -> Path:
    """``tool.output_path``, or ``default_name`` in the run directory when it is not set."""
    if cfg.tool.output_path:
        path = Path(cfg.tool.output_path)
        if path.is_dir():
            raise UerError(f"tool.output_path={path} is a directory; give a file name")
        return path
    return run_dir(Path.cwd()) / default_name


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text))


def write_jsonl(path, records: list[dict]) -> Path:
    """One JSON object a line.  A score that is not a finite number (weights allowed to hold NaN:
    ``allow_nonfinite_weights=true``) is written ``null``: Python's bare ``NaN`` is not JSON."""
    return write_text(path, "".join(json.dumps(_finite_or_null(record), ensure_ascii=False, allow_nan=False) + "\n"
                                    for record in records))


def _finite_or_null(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def write_array(path, array: np.ndarray) -> Path:
    """``.npy`` (numpy) or ``.pt`` (a torch tensor), by the file name's suffix."""
    path = Path(path)
    if path.suffix == ".pt":
        return atomic_write(path, lambda handle: torch.save(torch.from_numpy(np.ascontiguousarray(array)), handle),
                            binary=True)
    if path.suffix != ".npy":
        raise UerError(f"tool.output_path={path} must end in .npy (numpy) or .pt (torch tensor)")
    return atomic_write(path, lambda handle: np.save(handle, array), binary=True)


# ------------------------------------------------------------------------------------ inputs


def read_lines(path, key: str = "tool.test_path") -> list[tuple[int, str]]:
    """``(line number, text)`` of every non-blank line (stripped of its line break and outer spaces)."""
    if not path:
        raise UerError(f"{key} is not set; give a UTF-8 text file, one input per line")
    path = Path(path)
    if not path.is_file():
        raise UerError(f"input file {path} ({key}) not found; check the path")
    lines = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UerError(f"{path}:{number}: not valid UTF-8; save {key} as UTF-8") from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if text:
                lines.append((number, text))
    if not lines:
        raise UerError(f"input file {path} ({key}) has no non-blank line; give one input per line")
    return lines


def inputs(cfg: DictConfig) -> list[tuple[str, str]]:
    """``(where, text)`` from ``tool.text`` (one input) or the lines of ``tool.test_path``."""
    if cfg.tool.text:
        return [("tool.text", str(cfg.tool.text))]
    if not cfg.tool.test_path:
        raise UerError(f"tool={cfg.tool.type} needs tool.text=... (one input) or tool.test_path=... (one per line)")
    return [(f"{cfg.tool.test_path}:{number}", text) for number, text in read_lines(cfg.tool.test_path)]
