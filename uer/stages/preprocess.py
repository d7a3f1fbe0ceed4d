"""stage=preprocess: corpus -> memory-mapped dataset for the chosen target."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from uer.config.fields import FRACTION, POSITIVE, PROBABILITY, at_least, Bounds, setting
from uer.config.run import RunConfig, stage_key, stage_root
from uer.data.build import META_FILE, build_pretrain_dataset
from uer.errors import UerError
from uer.io.outputs import MANIFEST, TREE, Output, path_keys
from uer.tokenizers import build_tokenizer

log = logging.getLogger("uer.preprocess")


@dataclass
class PreprocessConfig:
    corpus_path: Optional[str] = setting(
        None, "the corpus: one document per line (mlm, lm, bilm, cls, t5), documents separated by blank lines, "
              "one sentence per line (bert, albert, nsp, bart), or source<TAB>target lines (seq2seq, prefixlm)")
    dataset_path: str = setting("outputs/data/dataset", "the dataset folder to write (memory-mapped arrays and "
                                                         "meta.json)")
    seq_length: int = setting(128, "tokens per instance (seq2seq, t5, bart: of the encoder's input)",
                              bounds=at_least(8))
    tgt_seq_length: Optional[int] = setting(None, "seq2seq: tokens of the decoder's input ([CLS] target; a longer "
                                                  "target is cut); null = seq_length", bounds=at_least(2))
    dup_factor: int = setting(1, "copies of the corpus with different static masks", bounds=at_least(1))
    short_seq_prob: float = setting(0.1, "probability of a shorter instance (bert, albert, nsp)", bounds=PROBABILITY)
    full_sentences: bool = setting(False, "let an instance run across documents (RoBERTa)")
    docs_buffer_size: int = setting(100000, "documents shuffled and packed together", bounds=at_least(1))
    processes_num: int = setting(1, "worker processes (the dataset is the same for any number)", bounds=at_least(1))
    dynamic_masking: bool = setting(False, "draw masks (t5, bart: the noise) at batch time, anew every epoch "
                                           "(RoBERTa)")
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
    t5_noise_density: float = setting(0.15, "t5: the share of tokens replaced by sentinel spans",
                                      bounds=Bounds(low=0, high=1, low_open=True, high_open=True))
    t5_mean_span_length: float = setting(3.0, "t5: mean tokens per corrupted span", bounds=at_least(1))
    bart_mask_ratio: float = setting(0.3, "bart: the share of tokens masked in spans, one [MASK] a span",
                                     bounds=FRACTION)
    bart_poisson_lambda: float = setting(3.0, "bart: span lengths are Poisson with this mean (at least 1)",
                                         bounds=POSITIVE)
    bart_permute_sentences: bool = setting(True, "bart: shuffle the sentences of an instance before masking")
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
        tokenizer_cfg=tokenizer.identity(), tgt_seq_length=p.tgt_seq_length,
        t5_noise_density=p.t5_noise_density, t5_mean_span_length=p.t5_mean_span_length,
        bart_mask_ratio=p.bart_mask_ratio, bart_poisson_lambda=p.bart_poisson_lambda,
        bart_permute_sentences=p.bart_permute_sentences,
    )
