"""Vocabulary scripts: build_vocab, diff_vocab, dynamic_vocab_adapter.

``build_vocab`` counts the tokens of ``tool.corpus_path`` with the composed tokenizer's
segmentation (``tokenizer=char``: every non-space character; ``tokenizer=space``: the
whitespace-separated words) in ``tool.processes_num`` worker processes and writes a vocab
file: ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``, then the tokens seen at
least ``tool.min_count`` times, most frequent first (ties in code point order), cut to
``tool.vocab_size`` lines in all.  The corpus is cut into fixed 1 MiB pieces whatever the
number of workers, and the order depends only on the counts, so the file is identical for
any ``processes_num``.  Learning a WordPiece vocabulary (``tokenizer=bert``) is out of
scope: build a character vocabulary (what Chinese BERT vocabularies mostly hold) or a word
vocabulary instead.

``diff_vocab`` compares ``tool.vocab_path`` with ``tool.new_vocab_path`` (JSON report).

``dynamic_vocab_adapter`` moves a model onto ``tool.new_vocab_path``: every tensor with one
row per token (word embedding, MLM / LM output matrix and bias) is rebuilt so that a token
of both vocabularies keeps its old row, and a new token gets a fresh row (normal, std
0.02, seeded by ``seed``; output biases 0).  Tied matrices stay equal.  A character
sub-encoder's embedding (``embedding.subencoder``) moves with the characters the same way.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from uer.data.build import _start_method
from uer.errors import UerError
from uer.io.checkpoint import checkpoint_tokenizer, save_checkpoint, stored_tokenizer_config
from uer.io.uer_format import to_uer_state_dict
from uer.models.subencoders import character_vocabulary
from uer.tokenizers import TOKENIZERS, Vocab, build_tokenizer, tokenizer_config
from uer.tokenizers.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN
from uer.config.fields import at_least, setting
from uer.tools import TOOLS, ModelInput, OutputFile, ToolConfig, require
from uer.tools.model_loading import (WORD_EMBEDDING, atomic_write, logger, model_file, output_file, read_state,
                                     write_text)

SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)
PIECE_BYTES = 1 << 20
# Tensors with one row per token, by the end of their name (checked against the row count too).
VOCAB_ROWS = ("embedding.word_embedding.weight", "mlm_linear_2.weight", "mlm_linear_2.bias",
              "output_layer.weight", "output_layer.bias")
# One row per character of the vocabulary's tokens (uer.models.subencoders), padding first.
CHARACTER_ROWS = "subencoder.embedding_layer.weight"

# ----------------------------------------------------------------------------- build_vocab


@dataclass
class BuildVocabConfig(OutputFile, ToolConfig):
    """``tool=build_vocab``."""

    corpus_path: Optional[str] = setting(None, "the text to count tokens in")
    min_count: int = setting(1, "keep tokens seen at least this often", bounds=at_least(1))
    vocab_size: Optional[int] = setting(None, "keep at most this many lines (special tokens included); null = no "
                                              "limit", bounds=at_least(1))
    processes_num: int = setting(1, "worker processes", bounds=at_least(1))


@dataclass
class VocabPairConfig(OutputFile, ToolConfig):
    """``tool=diff_vocab``."""

    vocab_path: Optional[str] = setting(None, "the first (old) vocabulary file")
    new_vocab_path: Optional[str] = setting(None, "the second (new) vocabulary file")


@dataclass
class AdaptVocabConfig(ModelInput, VocabPairConfig):
    """``tool=dynamic_vocab_adapter``."""

    vocab_path: Optional[str] = setting(None, "the model's vocabulary (.bin only; a .pt knows its own)")


@TOOLS.register("build_vocab", config=BuildVocabConfig)
def build_vocab(cfg) -> str:
    t = cfg.tool
    require(cfg, "corpus_path")
    if cfg.tokenizer.type == "spm":
        raise UerError("tool=build_vocab builds vocab files; a SentencePiece model is its own vocabulary "
                       "(add tokenizer=char or tokenizer=space)")
    if cfg.tokenizer.type == "bert":
        raise UerError("tool=build_vocab does not learn WordPiece vocabularies (tokenizer.type=bert); add "
                       "tokenizer=char (one token per character) or tokenizer=space (whitespace-separated words)")
    if t.min_count < 1:
        raise UerError(f"tool.min_count={t.min_count} must be at least 1")
    if t.processes_num < 1:
        raise UerError(f"tool.processes_num={t.processes_num} must be at least 1")
    if t.vocab_size is not None and t.vocab_size < len(SPECIAL_TOKENS):
        raise UerError(f"tool.vocab_size={t.vocab_size} must be at least {len(SPECIAL_TOKENS)} (the special tokens)")
    corpus = Path(t.corpus_path)
    if not corpus.is_file():
        raise UerError(f"corpus {corpus} (tool.corpus_path) not found; give a UTF-8 text file")
    out = output_file(cfg, "vocab.txt")

    counts = count_tokens(corpus, cfg.tokenizer.type, t.processes_num)
    for token in SPECIAL_TOKENS:
        counts.pop(token, None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = [token for token, count in ranked if count >= t.min_count]
    rare = len(ranked) - len(kept)
    room = None if t.vocab_size is None else t.vocab_size - len(SPECIAL_TOKENS)
    cut = 0 if room is None else max(len(kept) - room, 0)
    kept = kept if room is None else kept[:room]
    write_text(out, "".join(f"{token}\n" for token in (*SPECIAL_TOKENS, *kept)))
    logger.info("%s: %d distinct %s tokens, %d below min_count=%d, %d cut by vocab_size; wrote %d tokens to %s",
                corpus, len(ranked), cfg.tokenizer.type, rare, t.min_count, cut, len(kept) + len(SPECIAL_TOKENS), out)
    return str(out)


def count_tokens(corpus: Path, tokenizer_type: str, processes_num: int) -> Counter:
    """Token counts of every line of ``corpus``, tokenized the ``tokenizer_type`` way."""
    size = corpus.stat().st_size
    if size == 0:
        raise UerError(f"corpus {corpus} (tool.corpus_path) is empty; give a UTF-8 text file")
    pieces = _pieces(corpus, size)
    tasks = [(str(corpus), tokenizer_type, start, end) for start, end in pieces]
    workers = min(processes_num, len(tasks))
    total: Counter = Counter()
    if workers == 1:
        results = map(_count_piece, tasks)
        for result in results:
            total.update(_checked(result, corpus))
    else:
        context = multiprocessing.get_context(_start_method())
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for result in pool.map(_count_piece, tasks):
                total.update(_checked(result, corpus))
    if not total:
        raise UerError(f"corpus {corpus} (tool.corpus_path) has no tokens; give a UTF-8 text file with text")
    logger.info("%s: counted %d pieces in %d process(es)", corpus, len(tasks), workers)
    return total


def _pieces(corpus: Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges of about PIECE_BYTES, each ending after a line break (or at the end of the file)."""
    bounds = [0]
    with open(corpus, "rb") as handle:
        while bounds[-1] < size:
            position = bounds[-1] + PIECE_BYTES
            if position >= size:
                bounds.append(size)
                break
            handle.seek(position)
            handle.readline()  # finish the line the piece ends in
            bounds.append(min(handle.tell(), size))
    return list(zip(bounds[:-1], bounds[1:]))


def _splitter(tokenizer_type: str):
    """The composed tokenizer's ``tokenize`` (it never looks at its vocabulary)."""
    placeholder = Vocab(SPECIAL_TOKENS, unk_token=UNK_TOKEN, path="<build_vocab>", sha256="", fix="")
    cfg = TOKENIZERS.build_config({"type": tokenizer_type})
    return TOKENIZERS.get(tokenizer_type)(cfg, placeholder).tokenize


def _count_piece(task) -> Counter | int:
    """Token counts of one byte range; or the absolute offset of a byte that is not UTF-8."""
    path, tokenizer_type, start, end = task
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return start + err.start
    if start == 0:
        text = text.removeprefix("\ufeff")
    tokenize = _splitter(tokenizer_type)
    counts: Counter = Counter()
    for line in text.split("\n"):
        if line.strip():
            counts.update(tokenize(line))
    return counts


def _checked(result, corpus: Path) -> Counter:
    if isinstance(result, int):
        with open(corpus, "rb") as handle:
            line = handle.read(result).count(b"\n") + 1
        raise UerError(f"{corpus}:{line}: not valid UTF-8; save tool.corpus_path as UTF-8")
    return result


# ------------------------------------------------------------------------------ diff_vocab


def read_vocab(path, key: str) -> Vocab:
    if not path:
        raise UerError(f"{key} is not set; give a vocab file (one token per line)")
    if not Path(path).is_file():
        raise UerError(f"vocab file {path} ({key}) not found; check the path")
    return Vocab.from_file(path)


@TOOLS.register("diff_vocab", config=VocabPairConfig)
def diff_vocab(cfg) -> dict:
    old = read_vocab(cfg.tool.vocab_path, "tool.vocab_path")
    new = read_vocab(cfg.tool.new_vocab_path, "tool.new_vocab_path")
    old_ids, new_ids = old.ids, new.ids
    report = {
        "vocab_path": str(cfg.tool.vocab_path),
        "new_vocab_path": str(cfg.tool.new_vocab_path),
        "vocab_size": len(old),
        "new_vocab_size": len(new),
        "shared": sum(1 for token in old.tokens if token in new_ids),
        "same_id": sum(1 for token, index in old_ids.items() if new_ids.get(token) == index),
        "only_in_vocab": [token for token in old.tokens if token not in new_ids],
        "only_in_new_vocab": [token for token in new.tokens if token not in old_ids],
    }
    out = output_file(cfg, "vocab_diff.json")
    write_text(out, json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    logger.info("%s (%d tokens) vs %s (%d tokens): %d shared (%d at the same id), %d only in the first, "
                "%d only in the second; wrote %s", old.path, len(old), new.path, len(new), report["shared"],
                report["same_id"], len(report["only_in_vocab"]), len(report["only_in_new_vocab"]), out)
    return report


# -------------------------------------------------------------------- dynamic_vocab_adapter


@TOOLS.register("dynamic_vocab_adapter", config=AdaptVocabConfig)
def dynamic_vocab_adapter(cfg) -> str:
    path = model_file(cfg.tool.input_path)
    new = read_vocab(cfg.tool.new_vocab_path, "tool.new_vocab_path")
    state, payload = read_state(path, cfg.allow_nonfinite_weights)
    if WORD_EMBEDDING not in state:
        raise UerError(f"model file {path} has no {WORD_EMBEDDING.removeprefix('backbone.')}; it is not a model "
                       "of this toolkit")
    rows = state[WORD_EMBEDDING].shape[0]
    old = _old_vocab(cfg, path, payload)
    if len(old) != rows:
        raise UerError(f"vocab {old.path} has {len(old)} tokens but model {path} has {rows} word embedding rows; "
                       "set tool.vocab_path= to the vocabulary the model was trained with")
    out = output_file(cfg, "adapted.bin" if payload is None else "adapted.pt")
    adapted = adapt_state(state, old, new, cfg.seed)
    if out.suffix == ".bin":
        uer_state = to_uer_state_dict(adapted)
        atomic_write(out, lambda handle: torch.save(uer_state, handle), binary=True)
    else:
        if payload is None:
            raise UerError(f"tool.output_path={out} would be a .pt checkpoint, but {path} is a UER .bin with no "
                           "config to describe it; give an output path ending in .bin")
        config = dict(payload.get("config") or {})
        stored = dataclasses.asdict(tokenizer_config(stored_tokenizer_config(payload)))
        stored["vocab_path"] = str(cfg.tool.new_vocab_path)
        config["tokenizer"] = stored
        save_checkpoint(out, model_state=adapted, config=config, tokenizer=build_tokenizer(stored), trainer=None,
                        task_info=payload.get("task_info"))
    shared = sum(1 for token in new.tokens if token in old.ids)
    logger.info("%s: moved from %s (%d tokens) to %s (%d tokens): %d rows kept, %d new rows, %d old tokens dropped; "
                "wrote %s", path, old.path, len(old), new.path, len(new), shared, len(new) - shared, len(old) - shared,
                out)
    return str(out)


def _old_vocab(cfg, path: Path, payload) -> Vocab:
    """The model's vocabulary: a checkpoint's own; for a UER .bin, ``tool.vocab_path``."""
    if payload is not None:
        if cfg.tool.vocab_path:
            raise UerError(f"checkpoint {path} carries its vocabulary, so tool.vocab_path is not used; drop it "
                           "(tool.vocab_path names the vocabulary of a UER .bin)")
        tokenizer = checkpoint_tokenizer(payload, path)
        if tokenizer.kind == "spm":
            raise UerError(f"checkpoint {path} tokenizes with a SentencePiece model; tool=dynamic_vocab_adapter "
                           "moves models between vocab files")
        return tokenizer.vocab
    if not cfg.tool.vocab_path:
        raise UerError(f"model file {path} is a UER .bin, which does not name its vocabulary; give "
                       "tool.vocab_path=... (the vocab it was trained with)")
    return read_vocab(cfg.tool.vocab_path, "tool.vocab_path")


def adapt_state(state: dict[str, torch.Tensor], old: Vocab, new: Vocab, seed: int) -> dict[str, torch.Tensor]:
    """``state`` with every per-token tensor re-indexed from ``old`` ids to ``new`` ids."""
    rows = len(old)
    source = torch.tensor([old.ids.get(token, -1) for token in new.tokens])
    shared = source >= 0
    generator = torch.Generator().manual_seed(seed)
    adapted: dict[str, torch.Tensor] = {}
    done: list[tuple[torch.Tensor, torch.Tensor]] = []  # (old tensor, new tensor): tied matrices stay equal
    for key, tensor in state.items():
        if not (key.endswith(VOCAB_ROWS) and tensor.dim() >= 1 and tensor.shape[0] == rows):
            adapted[key] = tensor
            continue
        twin = next((new_t for old_t, new_t in done if old_t.shape == tensor.shape and torch.equal(old_t, tensor)),
                    None)
        if twin is not None:
            adapted[key] = twin.clone()
            continue
        result = torch.zeros((len(new), *tensor.shape[1:]), dtype=tensor.dtype)
        if tensor.dim() > 1:
            fresh = torch.normal(0.0, 0.02, size=result.shape, generator=generator).to(tensor.dtype)
            result[~shared] = fresh[~shared]
        result[shared] = tensor[source[shared]]
        adapted[key] = result
        done.append((tensor, result))
    for key in [key for key in adapted if key.endswith(CHARACTER_ROWS)]:
        adapted[key] = adapt_characters(adapted[key], old, new, generator)
    return adapted


def adapt_characters(matrix: torch.Tensor, old: Vocab, new: Vocab, generator: torch.Generator) -> torch.Tensor:
    """A sub-encoder's character embedding re-indexed from ``old``'s characters to ``new``'s: its
    character vocabulary is derived from the token vocabulary (:mod:`uer.models.subencoders`)."""
    before, after = character_vocabulary(old.tokens), character_vocabulary(new.tokens)
    result = torch.normal(0.0, 0.02, size=(len(after) + 1, matrix.shape[1]), generator=generator).to(matrix.dtype)
    result[0] = matrix[0]
    for symbol, row in after.items():
        if symbol in before:
            result[row] = matrix[before[symbol]]
    return result
