"""tool=cloze_test: the ``tool.topn`` most likely tokens at each ``[MASK]`` of each input line.

    python main.py stage=tool tool=cloze_test tool.input_path=model.pt tool.text="北京是中国的[MASK]都"

Inputs come from ``tool.text`` or the lines of ``tool.test_path``; ``[MASK]`` (written as
such, whatever the tokenizer) marks each position to predict, one token per ``[MASK]``.
The model must have a masked-LM head (``target=mlm``, ``bert`` or ``albert``).  The input
is ``[CLS] line [SEP]``, cut to ``tool.seq_length``.  Output: JSON lines at
``tool.output_path`` (default ``cloze.jsonl`` in the run directory), one per input:
``{"text", "filled" (each [MASK] replaced by its best token), "predictions": [[[token,
probability], ...] per [MASK]]}``.

``tool.mode=random`` is the original toolkit's ``scripts/cloze_test.py``: no ``[MASK]`` in
the text; the input is ``[CLS]`` and the line's tokens (no ``[SEP]``, as there), cut to
``tool.seq_length``; one token drawn at random (seeded by ``seed``) is masked.  Each output
line is ``{"text", "masked" (the tokens, one [MASK]), "position", "answer" (the masked
token), "predictions": [[token, probability], ...], "hit" (whether the topn hold the
answer)}``, and the log says in how many lines the topn held it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from uer.errors import UerError
from uer.runtime import autocast
from uer.tokenizers.vocab import MASK_TOKEN
from uer.config.fields import at_least, setting
from uer.tools import TOOLS, Batching, ModelToolConfig, TextInputs
from uer.models.sentence import pad_batch
from uer.tools.inspection import sequence_length
from uer.tools.model_loading import inputs, load_model, logger, output_file, write_jsonl

MLM_TARGETS = ("mlm", "bert", "albert")
MODES = ("marked", "random")


def mlm_logits(target, hidden: torch.Tensor) -> torch.Tensor:
    """The masked-LM head's vocabulary logits for hidden states (N, H)."""
    return target.mlm_linear_2(target.layer_norm(target.act(target.mlm_linear_1(hidden))))


@dataclass
class ClozeConfig(Batching, TextInputs, ModelToolConfig):
    """``tool=cloze_test``."""

    topn: int = setting(10, "candidates listed at each [MASK]", bounds=at_least(1))
    mode: str = setting("marked", "marked: predict each [MASK] written in the text | random: as the original "
                                  "script, mask one random token of each line and report whether the topn hold it")


@TOOLS.register("cloze_test", config=ClozeConfig)
def cloze_test(cfg) -> str:
    if cfg.tool.topn < 1:
        raise UerError(f"tool.topn={cfg.tool.topn} must be at least 1")
    if cfg.tool.batch_size < 1:
        raise UerError(f"tool.batch_size={cfg.tool.batch_size} must be at least 1")
    if cfg.tool.mode not in MODES:
        raise UerError(f"tool.mode={cfg.tool.mode} is not known; choose one of: {', '.join(MODES)}")
    lines = inputs(cfg)
    loaded = load_model(cfg)
    target = loaded.require_target(MLM_TARGETS, "cloze_test")
    loaded.tokenizer.vocab.require(("cls", "sep", "mask"), "tool=cloze_test")
    seq_length = sequence_length(cfg, loaded)
    if cfg.tool.mode == "random":
        results = random_cloze(cfg, loaded, target, lines, seq_length)
    else:
        results = marked_cloze(cfg, loaded, target, lines, seq_length)
    out = output_file(cfg, "cloze.jsonl")
    write_jsonl(out, results)
    logger.info("wrote predictions for %d lines to %s", len(results), out)
    return str(out)


def top_predictions(cfg, loaded, target, sequences: list[list[int]], mask_id: int) -> list[list[list]]:
    """For each sequence, the ``tool.topn`` ``[token, probability]`` pairs at each of its ``mask_id`` positions."""
    vocab = loaded.tokenizer.vocab
    topn = min(cfg.tool.topn, len(vocab))
    predictions = []
    with torch.no_grad(), autocast(loaded.device, cfg.hardware.precision):
        for start in range(0, len(sequences), cfg.tool.batch_size):
            src, seg = pad_batch(sequences[start:start + cfg.tool.batch_size], loaded.device)
            hidden = loaded.backbone(src, seg)
            masked = src == mask_id
            probs = torch.softmax(mlm_logits(target, hidden[masked]).float(), dim=-1)
            values, ids = probs.topk(topn, dim=-1)
            offset = 0
            for count in masked.sum(dim=1).tolist():
                predictions.append([[[vocab.id_to_token(i), round(p, 6)] for p, i in zip(values[row].tolist(),
                                                                                          ids[row].tolist())]
                                    for row in range(offset, offset + count)])
                offset += count
    return predictions


def marked_cloze(cfg, loaded, target, lines, seq_length: int) -> list[dict]:
    """Each ``[MASK]`` written in a line, predicted in ``[CLS] line [SEP]``."""
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    sequences = []
    for where, text in lines:
        pieces = text.split(MASK_TOKEN)
        if len(pieces) == 1:
            raise UerError(f"{where}: no {MASK_TOKEN} in the text; write {MASK_TOKEN} where a token is to be "
                           "predicted, or use tool.mode=random")
        ids = tokenizer.encode(pieces[0])
        for piece in pieces[1:]:
            ids += [vocab.mask_id, *tokenizer.encode(piece)]
        if ids[: seq_length - 2].count(vocab.mask_id) < len(pieces) - 1:
            raise UerError(f"{where}: a {MASK_TOKEN} lies beyond the first {seq_length - 2} tokens; shorten the "
                           "text or raise tool.seq_length")
        sequences.append([vocab.cls_id, *ids[: seq_length - 2], vocab.sep_id])
    results = []
    for (where, text), predictions in zip(lines, top_predictions(cfg, loaded, target, sequences, vocab.mask_id)):
        pieces = text.split(MASK_TOKEN)
        filled = pieces[0] + "".join(best[0][0] + piece for best, piece in zip(predictions, pieces[1:]))
        results.append({"text": text, "filled": filled, "predictions": predictions})
        logger.info("%s: %s", where, filled)
    return results


def random_cloze(cfg, loaded, target, lines, seq_length: int) -> list[dict]:
    """The original ``scripts/cloze_test.py``: the input is ``[CLS]`` and the line's tokens (no
    ``[SEP]``), cut to ``seq_length``; one of its tokens, drawn at random (seeded by ``seed``), is
    masked; ``hit`` says whether the topn predictions hold it."""
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    rng = random.Random(cfg.seed)
    kept, sequences, answers = [], [], []
    for where, text in lines:
        ids = [vocab.cls_id, *tokenizer.encode(text)][:seq_length]
        if len(ids) == 1:
            logger.warning("%s: no token in the line; skipped", where)
            continue
        position = rng.randint(1, len(ids) - 1)
        answers.append((position, ids[position]))
        ids[position] = vocab.mask_id
        kept.append((where, text))
        sequences.append(ids)
    results, hits = [], 0
    for (where, text), ids, (position, answer), predictions in zip(
            kept, sequences, answers, top_predictions(cfg, loaded, target, sequences, vocab.mask_id)):
        tokens = [vocab.id_to_token(i) for i in ids[1:]]
        candidates = [token for token, _ in predictions[0]]
        hit = vocab.id_to_token(answer) in candidates
        hits += hit
        results.append({"text": text, "masked": " ".join(tokens), "position": position - 1,
                        "answer": vocab.id_to_token(answer), "predictions": predictions[0], "hit": hit})
        logger.info("%s: %s -> %s (%s)", where, " ".join(tokens), " ".join(candidates), "hit" if hit else "miss")
    if results:
        logger.info("the top %d held the masked token in %d of %d lines (%.4f)", cfg.tool.topn, hits, len(results),
                    hits / len(results))
    return results
