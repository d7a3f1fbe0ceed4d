"""stage=preprocess: corpus -> memory-mapped dataset for the chosen target."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from uer.config.fields import PROBABILITY, at_least, Bounds, setting
from uer.config.run import RunConfig, stage_key, stage_root
from uer.data.build import META_FILE, build_pretrain_dataset
from uer.errors import UerError
from uer.io.outputs import MANIFEST, TREE, Output, path_keys
from uer.tokenizers import build_tokenizer

log = logging.getLogger("uer.preprocess")


@dataclass
class PreprocessConfig:
    corpus_path: Optional[str] = setting(
        None, "the corpus: one document per line (mlm, lm, bilm, cls) or documents separated by blank lines, "
              "one sentence per line (bert, albert, nsp)")
    dataset_path: str = setting("outputs/data/dataset", "the dataset folder to write (memory-mapped arrays and "
                                                         "meta.json)")
    seq_length: int = setting(128, "tokens per instance", bounds=at_least(8))
    dup_factor: int = setting(1, "copies of the corpus with different static masks", bounds=at_least(1))
    short_seq_prob: float = setting(0.1, "probability of a shorter instance (bert, albert, nsp)", bounds=PROBABILITY)
    full_sentences: bool = setting(False, "let an instance run across documents (RoBERTa)")
    docs_buffer_size: int = setting(100000, "documents shuffled and packed together", bounds=at_least(1))
    processes_num: int = setting(1, "worker processes (the dataset is the same for any number)", bounds=at_least(1))
    dynamic_masking: bool = setting(False, "draw masks at batch time, anew every epoch (RoBERTa)")
    span_masking: bool = setting(False, "mask whole spans (SpanBERT)")
    span_geo_prob: float = setting(0.2, "span lengths are geometric with this p",
                                   bounds=Bounds(low=0, high=1, low_open=True))
    span_max_length: int = setting(10, "longest masked span", bounds=at_least(1))
    whole_word_masking: bool = setting(False, "mask every token of a word together, words found by word_segmenter "
                                              "(RoBERTa-wwm, MacBERT); masked-LM targets, not with span_masking")
    word_segmenter: str = setting("jieba", "how whole_word_masking finds words: jieba (Chinese; pip install -e "
                                           "\".[wwm]\") or whitespace (space-separated languages)")
    segmenter_dict: Optional[str] = setting(None, "a jieba user dictionary (one word a line) for "
                                                  "word_segmenter=jieba")
    overwrite: bool = setting(False, "replace the dataset already at dataset_path (only its own files: other files "
                                     "in the directory stay); false = an existing dataset stops the run")


@stage_root("preprocess")
@dataclass
class PreprocessRun(RunConfig):
    stage: str = stage_key("preprocess")
    tokenizer: Any = setting(MISSING, "the tokenizer (tokenizer=)")
    target: Any = setting(MISSING, "the target the dataset is built for (target=)")
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


def outputs(cfg) -> list[Output]:
    return [Output("preprocess.dataset_path", Path(cfg.preprocess.dataset_path), TREE)]


def input_keys(cfg) -> list[str]:
    return ["preprocess.corpus_path", "preprocess.segmenter_dict", *path_keys(cfg, "tokenizer")]


def prepare(cfg) -> None:
    """An existing dataset is replaced only when asked to (its directory's other files stay)."""
    path = Path(cfg.preprocess.dataset_path)
    if cfg.preprocess.overwrite or not ((path / META_FILE).is_file() or (path / MANIFEST).is_file()):
        return
    raise UerError(f"preprocess.dataset_path={path} already holds a dataset; pass preprocess.overwrite=true to "
                   "replace it (only the files of the dataset are replaced), or choose another preprocess.dataset_path")


def run(cfg) -> dict:
    p = cfg.preprocess
    if not p.corpus_path:
        raise UerError("preprocess.corpus_path is not set; e.g. preprocess.corpus_path=corpora/book_review.txt")
    tokenizer = build_tokenizer(cfg.tokenizer)
    return build_pretrain_dataset(
        p.corpus_path, p.dataset_path, tokenizer, cfg.target.type,
        seq_length=p.seq_length, dup_factor=p.dup_factor, short_seq_prob=p.short_seq_prob,
        full_sentences=p.full_sentences, docs_buffer_size=p.docs_buffer_size, processes_num=p.processes_num,
        seed=cfg.seed, dynamic_masking=p.dynamic_masking, span_masking=p.span_masking,
        span_geo_prob=p.span_geo_prob, span_max_length=p.span_max_length,
        whole_word_masking=p.whole_word_masking, word_segmenter=p.word_segmenter, segmenter_dict=p.segmenter_dict,
        tokenizer_cfg=tokenizer.identity(),
    )
