"""Tokenizers: text -> tokens -> ids, through a validated :class:`Vocab`.

``build_tokenizer`` is the one entry point; ``type`` picks the segmentation
(``bert``, ``char``, ``space``) unless ``spm_model_path`` is set, in which case the
SentencePiece model supplies both segmentation and vocabulary whatever ``type`` says
(``vocab_path`` is then ignored), as in the original toolkit.
"""

from __future__ import annotations

from uer.errors import UerError
from uer.registry import Registry
from uer.tokenizers.bert import BertTokenizer
from uer.tokenizers.simple import CharTokenizer, SpaceTokenizer
from uer.tokenizers.spm import SpmTokenizer
from uer.tokenizers.vocab import Vocab, VocabTokenizer

TOKENIZERS: Registry = Registry("tokenizer")
TOKENIZERS.register("bert")(lambda vocab, do_lower_case: BertTokenizer(vocab, do_lower_case))
TOKENIZERS.register("char")(lambda vocab, do_lower_case: CharTokenizer(vocab))
TOKENIZERS.register("space")(lambda vocab, do_lower_case: SpaceTokenizer(vocab))


def build_tokenizer(
    type: str = "bert",
    vocab_path: str | None = None,
    spm_model_path: str | None = None,
    do_lower_case: bool = True,
) -> VocabTokenizer:
    if type not in TOKENIZERS:
        raise UerError(
            f"unknown tokenizer type {type!r}; set tokenizer.type= one of {', '.join(TOKENIZERS.names())}"
        )
    if spm_model_path:
        return SpmTokenizer(spm_model_path)
    if not vocab_path:
        raise UerError("no vocabulary given; set tokenizer.vocab_path=... or tokenizer.spm_model_path=...")
    return TOKENIZERS.get(type)(Vocab.from_file(vocab_path), do_lower_case)


__all__ = ["TOKENIZERS", "Vocab", "VocabTokenizer", "build_tokenizer"]
