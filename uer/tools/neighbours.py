"""Nearest words by cosine similarity: topn_words_indep (context-free) and topn_words_dep (in context).

* ``topn_words_indep``: words from ``tool.text`` (separated by spaces) or ``tool.test_path``
  (one per line); their ``tool.topn`` nearest vocabulary tokens by the cosine of the
  word embedding rows.
* ``topn_words_dep``: lines ``sentence<TAB>word`` (``tool.test_path``, or one in
  ``tool.text``); ``word`` must be one token of the sentence (its first occurrence is
  used).  Every vocabulary token is put in its place in turn and the last layer's hidden
  state there is compared (cosine) with the original's: the ``tool.topn`` tokens that
  change the contextual state least.  This costs one forward pass per vocabulary token
  (in batches of ``tool.batch_size``).

Neither lists the word itself or the special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]).
A word is a vocabulary token, or text the tokenizer turns into exactly one token.
Output: JSON lines at ``tool.output_path`` (default ``neighbours.jsonl`` in the run
directory), ``{"word", "token", "neighbours": [[token, cosine], ...]}`` (plus
``"sentence"`` for topn_words_dep), one per input in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from uer.errors import UerError
from uer.runtime import autocast
from uer.config.fields import at_least, setting
from uer.tools import TOOLS, Batching, ModelToolConfig, TextInputs
from uer.tools.inspection import sequence_length
from uer.tools.model_loading import inputs, load_model, logger, output_file, warn_word_embedding_alone, write_jsonl


def word_id(tokenizer, word: str) -> Optional[int]:
    """The id of ``word``: itself if it is a vocabulary token, else its tokenization if that is one known token."""
    vocab = tokenizer.vocab
    if word in vocab.ids:
        return vocab.ids[word]
    tokens = tokenizer.tokenize(word)
    if len(tokens) == 1 and tokens[0] in vocab.ids and vocab.ids[tokens[0]] != vocab.unk_id:
        return vocab.ids[tokens[0]]
    return None


def _check_topn(cfg) -> int:
    if cfg.tool.topn < 1:
        raise UerError(f"tool.topn={cfg.tool.topn} must be at least 1")
    return cfg.tool.topn


def _top(scores: torch.Tensor, excluded: list[int], topn: int, tokenizer) -> list[list]:
    scores = scores.clone()
    scores[excluded] = float("-inf")
    values, ids = scores.topk(min(topn, int(torch.isfinite(scores).sum())))
    return [[tokenizer.vocab.id_to_token(i), round(v, 6)] for v, i in zip(values.tolist(), ids.tolist())]


def _write(cfg, results: list[dict]) -> str:
    out = output_file(cfg, "neighbours.jsonl")
    write_jsonl(out, results)
    for result in results:
        shown = ", ".join(f"{token} ({score:.3f})" for token, score in result["neighbours"])
        logger.info("%s: %s", result["word"], shown or "not in the vocabulary")
    logger.info("wrote the neighbours of %d words to %s", len(results), out)
    return str(out)


@dataclass
class NeighboursConfig(TextInputs, ModelToolConfig):
    """``tool=topn_words_indep``: nearest words by their embedding alone."""

    topn: int = setting(10, "neighbours listed per word", bounds=at_least(1))


@dataclass
class ContextNeighboursConfig(Batching, NeighboursConfig):
    """``tool=topn_words_dep``: nearest words in the line's context."""

    batch_size: int = setting(256, "candidate sentences encoded per batch", bounds=at_least(1))


@TOOLS.register("topn_words_indep", config=NeighboursConfig)
def topn_words_indep(cfg) -> str:
    topn = _check_topn(cfg)
    words = [word for _, text in inputs(cfg) for word in text.split()]
    loaded = load_model(cfg)
    tokenizer = loaded.tokenizer
    warn_word_embedding_alone(loaded.path, loaded.config["embedding"]["subencoder"],
                              "neighbours here are by the word embedding alone")
    matrix = F.normalize(loaded.backbone.embedding.word_embedding.weight.detach().float(), dim=-1)
    special = sorted(tokenizer.vocab.special_ids)
    results = []
    for word in words:
        index = word_id(tokenizer, word)
        if index is None:
            logger.warning("%s is not a token of vocabulary %s; no neighbours", word, tokenizer.vocab.path)
            results.append({"word": word, "token": None, "neighbours": []})
            continue
        neighbours = _top(matrix @ matrix[index], [*special, index], topn, tokenizer)
        results.append({"word": word, "token": tokenizer.vocab.id_to_token(index), "neighbours": neighbours})
    return _write(cfg, results)


@TOOLS.register("topn_words_dep", config=ContextNeighboursConfig)
def topn_words_dep(cfg) -> str:
    topn = _check_topn(cfg)
    if cfg.tool.batch_size < 1:
        raise UerError(f"tool.batch_size={cfg.tool.batch_size} must be at least 1")
    queries = []
    for where, text in inputs(cfg):
        sentence, tab, word = text.rpartition("\t")
        if not tab or not sentence.strip() or not word.strip():
            raise UerError(f"{where}: expected 'sentence<TAB>word'; put the word after a tab")
        queries.append((where, sentence.strip(), word.strip()))
    loaded = load_model(cfg)
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    vocab.require(("cls", "sep"), "tool=topn_words_dep")
    seq_length = sequence_length(cfg, loaded)
    candidates = torch.tensor([i for i in range(len(vocab)) if i not in vocab.special_ids], device=loaded.device)
    results = []
    for where, sentence, word in queries:
        index = word_id(tokenizer, word)
        ids = [vocab.cls_id, *tokenizer.encode(sentence)[: seq_length - 2], vocab.sep_id]
        if index is None or index not in ids[1:-1]:
            raise UerError(f"{where}: {word!r} is not one token of the (first {seq_length - 2} tokens of the) "
                           f"sentence as tokenized by {tokenizer.kind}; give a word the sentence contains")
        position = ids[1:-1].index(index) + 1
        scores = contextual_similarity(loaded, ids, position, candidates, cfg.tool.batch_size, cfg.hardware.precision)
        full = torch.full((len(vocab),), float("-inf"))
        full[candidates.cpu()] = scores
        neighbours = _top(full, [index], topn, tokenizer)
        results.append({"sentence": sentence, "word": word, "token": vocab.id_to_token(index),
                        "neighbours": neighbours})
    return _write(cfg, results)


def contextual_similarity(loaded, ids: list[int], position: int, candidates: torch.Tensor, batch_size: int,
                          precision: str) -> torch.Tensor:
    """Cosine between the hidden state at ``position`` of ``ids`` and of ``ids`` with each candidate there."""
    src = torch.tensor([ids], device=loaded.device)
    with torch.no_grad(), autocast(loaded.device, precision):
        reference = loaded.backbone(src, torch.ones_like(src))[0, position].float()
        scores = []
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            batch = src.repeat(len(chunk), 1)
            batch[:, position] = chunk
            hidden = loaded.backbone(batch, torch.ones_like(batch))[:, position].float()
            scores.append(F.cosine_similarity(hidden, reference[None], dim=-1))
    return torch.cat(scores).cpu()
