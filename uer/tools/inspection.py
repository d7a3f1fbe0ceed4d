"""Looking inside a model: check_model, extract_embedding, extract_feature.

* ``check_model``: every tensor's name, shape and dtype (TSV at ``tool.output_path`` when
  given, a summary in the log); for our checkpoints also that the weights rebuild the
  model their config describes.  Non-finite values (NaN/Inf) are an error naming the
  tensor, after the report is written.
* ``extract_embedding``: the word embedding matrix (vocab_size, emb_size), row i = token
  id i, as float32 ``.npy`` (or a torch tensor in ``.pt``).
* ``extract_feature``: one row per non-blank line of ``tool.test_path`` (or one row for
  ``tool.text``): the last layer's hidden states of ``[CLS] line [SEP]`` (cut to
  ``tool.seq_length``), pooled over those tokens by ``tool.pooling`` (``mean`` over all of
  them, ``first`` = the [CLS] position, ``last`` = the [SEP] position, ``max``
  element-wise); float32 ``.npy`` (or ``.pt``) of shape (lines, hidden_size).  The inputs and
  pooling are :mod:`uer.models.sentence`'s, as ``task=siamese``/``simcse`` embed: on their
  checkpoints, with the task's pooling and seq_length, the rows are the embeddings
  ``stage=infer`` writes.
  ``tool.pooling=none``: every token's hidden states, as the original's
  ``extract_feature.py`` wrote them: (lines, seq_length, hidden_size), each line's
  positions after its ``[SEP]`` zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.errors import UerError
from uer.models.pooling import POOLINGS
from uer.models.sentence import embed, pad_batch, sentence_ids
from uer.runtime import autocast
from uer.config.fields import setting
from uer.tools import TOOLS, Batching, ModelToolConfig, TextInputs
from uer.models.subencoders import stored_subencoder
from uer.tools.model_loading import (WORD_EMBEDDING, inputs, load_model, logger, model_file, output_file,
                                     read_state, warn_word_embedding_alone, write_array, write_text)



@dataclass
class FeatureConfig(Batching, TextInputs, ModelToolConfig):
    """``tool=extract_feature``."""

    pooling: str = setting("mean", "how each line's hidden states become one row: mean | first ([CLS]) | "
                                   "last ([SEP]) | max; none = every token's (lines, seq_length, hidden_size)")


@TOOLS.register("check_model", config=ModelToolConfig)
def check_model(cfg) -> dict:
    path = model_file(cfg.tool.input_path)
    state, payload = read_state(path, allow_nonfinite=True)  # reported below, after the report is written
    storages: set[int] = set()
    parameters, non_finite = 0, []
    for key, tensor in state.items():
        if tensor.untyped_storage().data_ptr() not in storages:  # tied tensors are counted once
            storages.add(tensor.untyped_storage().data_ptr())
            parameters += tensor.numel()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            non_finite.append(key)
    summary = {"path": str(path), "format": "bin" if payload is None else "pt", "tensors": len(state),
               "parameters": parameters, "non_finite": non_finite}
    if payload is not None:
        config = payload.get("config") or {}
        summary["config"] = {node: (config.get(node) or {}).get("type")
                             for node in ("embedding", "encoder", "target", "task", "tokenizer") if node in config}
        summary["vocab_size"] = (payload.get("vocab") or {}).get("vocab_size")
        summary["trainer_step"] = (payload.get("trainer") or {}).get("step")
        # a UerError if the weights do not fit the config (non-finite ones are reported below)
        load_model(cfg, path, with_tokenizer=False, allow_nonfinite=True)
    if cfg.tool.output_path:
        out = output_file(cfg, "model.tsv")
        rows = ["name\tshape\tdtype\tnumel\n"] + [
            f"{key}\t{'x'.join(map(str, tensor.shape))}\t{str(tensor.dtype).removeprefix('torch.')}\t{tensor.numel()}\n"
            for key, tensor in state.items()]
        write_text(out, "".join(rows))
        summary["output_path"] = str(out)
    for key, tensor in state.items():
        logger.info("%s %s %s", key, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
    logger.info("%s: %s", path, {k: v for k, v in summary.items() if k != "path"})
    if non_finite:
        more = f" and {len(non_finite) - 1} more tensors" if len(non_finite) > 1 else ""
        raise UerError(f"model {path} has NaN or Inf values in {non_finite[0]}{more}; it is broken (train again "
                       "from an earlier checkpoint)")
    return summary


@TOOLS.register("extract_embedding", config=ModelToolConfig)
def extract_embedding(cfg) -> str:
    path = model_file(cfg.tool.input_path)
    state, payload = read_state(path, cfg.allow_nonfinite_weights)
    if WORD_EMBEDDING not in state:
        raise UerError(f"model file {path} has no {WORD_EMBEDDING.removeprefix('backbone.')}; it is not a model "
                       "of this toolkit")
    warn_word_embedding_alone(path, stored_subencoder(payload), "the matrix written is the word embedding alone")
    matrix = state[WORD_EMBEDDING].detach().float().numpy()
    out = write_array(output_file(cfg, "word_embedding.npy"), matrix)
    logger.info("wrote the word embedding of %s, shape %s, to %s", path, matrix.shape, out)
    return str(out)


@TOOLS.register("extract_feature", config=FeatureConfig)
def extract_feature(cfg) -> str:
    t = cfg.tool
    per_token = t.pooling == "none"
    if not per_token and t.pooling not in POOLINGS:
        raise UerError(f"tool.pooling={t.pooling} is not known; choose one of: {', '.join(POOLINGS)}, none")
    if t.batch_size < 1:
        raise UerError(f"tool.batch_size={t.batch_size} must be at least 1")
    lines = inputs(cfg)
    out = output_file(cfg, "features.npy")
    if out.suffix not in (".npy", ".pt"):
        raise UerError(f"tool.output_path={out} must end in .npy (numpy) or .pt (torch tensor)")
    loaded = load_model(cfg)
    seq_length = sequence_length(cfg, loaded)
    sequences = [sentence_ids(loaded.tokenizer, text, seq_length) for _, text in lines]
    rows = []
    with torch.no_grad(), autocast(loaded.device, cfg.hardware.precision):
        for start in range(0, len(sequences), t.batch_size):
            src, seg = pad_batch(sequences[start:start + t.batch_size], loaded.device)
            if per_token:  # padded to seq_length, zeros where there is no token
                hidden = loaded.backbone(src, seg).float() * (seg != 0).unsqueeze(-1)
                rows.append(torch.nn.functional.pad(hidden, (0, 0, 0, seq_length - src.size(1))).cpu())
            else:
                rows.append(embed(loaded.backbone, src, seg, t.pooling).cpu())
    features = torch.cat(rows).numpy()
    write_array(out, features)
    logger.info("wrote %s features of %d lines of %s (pooling=%s) to %s", features.shape, len(lines),
                t.test_path or "tool.text", t.pooling, out)
    return str(out)


def sequence_length(cfg, loaded) -> int:
    """``tool.seq_length``, cut to the model's positions where it has a position embedding."""
    if cfg.tool.seq_length < 3:
        raise UerError(f"tool.seq_length={cfg.tool.seq_length} must be at least 3")
    positions = loaded.max_length
    return cfg.tool.seq_length if positions is None else min(cfg.tool.seq_length, positions)
