"""Tokenizers: text -> tokens -> ids, through a validated :class:`Vocab`.

``tokenizer=NAME`` picks the segmentation; each option has its schema (the keys it
reads).  ``bert``, ``char`` and ``space`` map tokens through a vocab file;
``spm`` takes segmentation and vocabulary from a SentencePiece model, ``hf`` from a Hugging Face
``tokenizer.json`` (any fast tokenizer).

A checkpoint carries its tokenizer whole (:func:`tokenizer_state`): the settings and the
vocabulary itself (the token list, or the SentencePiece model's bytes), so
:func:`tokenizer_from_state` rebuilds it with no file and from any directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from omegaconf import MISSING

from uer.config.fields import setting
from uer.errors import UerError
from uer.registry import Registry
from uer.tokenizers.bert import BertTokenizer
from uer.tokenizers.hf import BERT, HfTokenizer
from uer.tokenizers.simple import CharTokenizer, SpaceTokenizer
from uer.tokenizers.spm import SpmTokenizer
from uer.tokenizers.vocab import Vocab, VocabTokenizer

# Each builder takes the schema instance and, when rebuilding from a checkpoint, the stored
# vocabulary (a Vocab, the SentencePiece model's bytes, or read_hf_tokenizer's dict); None reads
# the configured file.
TOKENIZERS: Registry = Registry("tokenizer", group="tokenizer")
TYPES = "bert | char | space | spm | hf (pick with tokenizer=)"


@dataclass
class VocabFileTokenizerConfig:
    """``tokenizer=char`` / ``space``: tokens looked up in a vocab file."""

    type: str = setting(MISSING, TYPES)
    vocab_path: str = setting("models/google_zh_vocab.txt", "vocabulary file, one token a line ([PAD] first)")


@dataclass
class BertTokenizerConfig(VocabFileTokenizerConfig):
    """``tokenizer=bert``: basic splitting + WordPiece over the vocab file."""

    do_lower_case: bool = setting(True, "lower-case (and strip accents from) the text first")
    rules: str = setting("transformers", "rules for rare text: transformers (its classic BertTokenizer) | google "
                                         "(Google's tokenization.py, as the original UER-py: words of 101-200 "
                                         "characters split into pieces, private-use/unassigned characters [UNK], "
                                         "[MASK] in the text split like text); see uer/tokenizers/bert.py")


@dataclass
class SpmTokenizerConfig:
    """``tokenizer=spm``: a SentencePiece model gives both the pieces and their ids."""

    type: str = setting(MISSING, TYPES)
    spm_model_path: str = setting(MISSING, "a SentencePiece model file (.model)")


@dataclass
class HfTokenizerConfig:
    """``tokenizer=hf``: a Hugging Face fast tokenizer gives both the tokens and their ids."""

    type: str = setting(MISSING, TYPES)
    tokenizer_path: str = setting("", "a tokenizer.json, or a Hugging Face model directory holding one "
                                           "(its special_tokens_map.json / tokenizer_config.json name the "
                                           "special tokens; padding falls back to eos_token)")


TOKENIZERS.register("bert", config=BertTokenizerConfig)(
    lambda cfg, vocab: BertTokenizer(vocab or Vocab.from_file(cfg.vocab_path), cfg.do_lower_case, cfg.rules))
TOKENIZERS.register("char", config=VocabFileTokenizerConfig)(
    lambda cfg, vocab: CharTokenizer(vocab or Vocab.from_file(cfg.vocab_path)))
TOKENIZERS.register("space", config=VocabFileTokenizerConfig)(
    lambda cfg, vocab: SpaceTokenizer(vocab or Vocab.from_file(cfg.vocab_path)))
TOKENIZERS.register("spm", config=SpmTokenizerConfig)(lambda cfg, serialized: SpmTokenizer(cfg.spm_model_path,
                                                                                             serialized))
TOKENIZERS.register("hf", config=HfTokenizerConfig)(lambda cfg, stored: HfTokenizer(cfg.tokenizer_path, stored))


def build_tokenizer(cfg) -> VocabTokenizer:
    """The tokenizer of a ``tokenizer`` config (schema instance, config node or plain dict)."""
    cfg = tokenizer_config(cfg)
    return TOKENIZERS.lookup(cfg.type)(cfg, None)


def tokenizer_config(stored):
    """The schema instance of a ``tokenizer`` config.  Older checkpoints recorded ``spm_model_path``
    beside any ``type``: a set one meant SentencePiece."""
    if isinstance(stored, dict) and stored.get("spm_model_path") and stored.get("type") != "spm":
        stored = {"type": "spm", "spm_model_path": stored["spm_model_path"]}
    return TOKENIZERS.build_config(stored)


def tokenizer_state(tokenizer: VocabTokenizer, cfg) -> dict:
    """What a checkpoint stores to rebuild ``tokenizer`` (built from ``cfg``) without any file."""
    state = {"config": dataclasses.asdict(tokenizer_config(cfg))}
    if isinstance(tokenizer, SpmTokenizer):
        state["spm_model"] = torch.frombuffer(bytearray(tokenizer.serialized()), dtype=torch.uint8)
    elif isinstance(tokenizer, HfTokenizer):
        state["hf_tokenizer"] = dict(tokenizer.stored)
    else:
        state["tokens"] = list(tokenizer.vocab.tokens)
    return state


def tokenizer_from_state(state: dict, where: str) -> VocabTokenizer:
    """The tokenizer a :func:`tokenizer_state` describes; ``where`` names the checkpoint in messages."""
    try:
        cfg = tokenizer_config(state["config"])
        if cfg.type == "spm":
            return TOKENIZERS.lookup("spm")(cfg, bytes(state["spm_model"].numpy().tobytes()))
        if cfg.type == "hf":
            # Written before checkpoints recorded their framing: uer framed every such text [CLS] A [SEP] (B [SEP]).
            return TOKENIZERS.lookup("hf")(cfg, {"framing": BERT, **state["hf_tokenizer"]})
        return TOKENIZERS.lookup(cfg.type)(cfg, Vocab.from_tokens(state["tokens"], f"{where} (stored vocabulary)"))
    except (KeyError, TypeError, AttributeError) as err:
        raise UerError(f"checkpoint {where}: its stored tokenizer cannot be read ({type(err).__name__}: {err}); "
                       "it was modified after it was written") from None


__all__ = ["TOKENIZERS", "Vocab", "VocabTokenizer", "build_tokenizer", "tokenizer_from_state", "tokenizer_state"]
