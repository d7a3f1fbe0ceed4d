"""tool=cloze_test: the ``tool.topn`` most likely tokens at each ``[MASK]`` of each input line.

    python main.py stage=tool tool=cloze_test tool.input_path=model.pt tool.text="北京是中国的[MASK]都"

Inputs come from ``tool.text`` or the lines of ``tool.test_path``; ``[MASK]`` (written as
such, whatever the tokenizer) marks each position to predict, one token per ``[MASK]``.
The model must have a masked-LM head (``target=mlm``, ``bert`` or ``albert``).  The input
is ``[CLS] line [SEP]``, cut to ``tool.seq_length``.  Output: JSON lines at
``tool.output_path`` (default ``cloze.jsonl`` in the run directory), one per input:
``{"text", "filled" (each [MASK] replaced by its best token), "predictions": [[[token,
probability], ...] per [MASK]]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from uer.errors import UerError
from uer.runtime import autocast
from uer.tokenizers.vocab import MASK_TOKEN
from uer.config.fields import at_least, setting
from uer.tools import TOOLS, Batching, ModelToolConfig, TextInputs
from uer.tools.inspection import pad_batch, sequence_length
from uer.tools.model_loading import inputs, load_model, logger, output_file, write_text

MLM_TARGETS = ("mlm", "bert", "albert")


def mlm_logits(target, hidden: torch.Tensor) -> torch.Tensor:
    """The masked-LM head's vocabulary logits for hidden states (N, H)."""
    return target.mlm_linear_2(target.layer_norm(target.act(target.mlm_linear_1(hidden))))


@dataclass
class ClozeConfig(Batching, TextInputs, ModelToolConfig):
    """``tool=cloze_test``."""

    topn: int = setting(10, "candidates listed at each [MASK]", bounds=at_least(1))


@TOOLS.register("cloze_test", config=ClozeConfig)
def cloze_test(cfg) -> str:
    if cfg.tool.topn < 1:
        raise UerError(f"tool.topn={cfg.tool.topn} must be at least 1")
    if cfg.tool.batch_size < 1:
        raise UerError(f"tool.batch_size={cfg.tool.batch_size} must be at least 1")
    lines = inputs(cfg)
    loaded = load_model(cfg)
    target = loaded.require_target(MLM_TARGETS, "cloze_test")
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    seq_length = sequence_length(cfg, loaded)
    sequences = []
    for where, text in lines:
        pieces = text.split(MASK_TOKEN)
        if len(pieces) == 1:
            raise UerError(f"{where}: no {MASK_TOKEN} in the text; write {MASK_TOKEN} where a token is to be predicted")
        ids = tokenizer.encode(pieces[0])
        for piece in pieces[1:]:
            ids += [vocab.mask_id, *tokenizer.encode(piece)]
        if ids[: seq_length - 2].count(vocab.mask_id) < len(pieces) - 1:
            raise UerError(f"{where}: a {MASK_TOKEN} lies beyond the first {seq_length - 2} tokens; shorten the "
                           "text or raise tool.seq_length")
        sequences.append([vocab.cls_id, *ids[: seq_length - 2], vocab.sep_id])

    results = []
    topn = min(cfg.tool.topn, len(vocab))
    with torch.no_grad(), autocast(loaded.device, cfg.hardware.precision):
        for start in range(0, len(sequences), cfg.tool.batch_size):
            batch = sequences[start:start + cfg.tool.batch_size]
            src, seg = pad_batch(batch, loaded.device)
            hidden = loaded.backbone(src, seg)
            masked = src == vocab.mask_id
            probs = torch.softmax(mlm_logits(target, hidden[masked]).float(), dim=-1)
            values, ids = probs.topk(topn, dim=-1)
            counts = masked.sum(dim=1).tolist()
            offset = 0
            for (where, text), count in zip(lines[start:start + len(batch)], counts):
                predictions = [[[vocab.id_to_token(i), round(p, 6)] for p, i in zip(values[row].tolist(),
                                                                                    ids[row].tolist())]
                               for row in range(offset, offset + count)]
                offset += count
                pieces = text.split(MASK_TOKEN)
                filled = pieces[0] + "".join(best[0][0] + piece for best, piece in zip(predictions, pieces[1:]))
                results.append({"text": text, "filled": filled, "predictions": predictions})
                logger.info("%s: %s", where, filled)
    out = output_file(cfg, "cloze.jsonl")
    write_text(out, "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results))
    logger.info("wrote predictions for %d lines to %s", len(results), out)
    return str(out)
