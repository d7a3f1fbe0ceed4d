"""stage=preprocess: corpus -> memory-mapped dataset for the chosen target."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from uer.data.build import build_pretrain_dataset
from uer.errors import UerError
from uer.stages.common import tokenizer_from_config

log = logging.getLogger("uer.preprocess")


def run(cfg: DictConfig):
    p = cfg.preprocess
    if not p.corpus_path:
        raise UerError("preprocess.corpus_path is not set; e.g. preprocess.corpus_path=corpora/book_review.txt")
    if p.seq_length > cfg.embedding.max_seq_length:
        raise UerError(
            f"preprocess.seq_length={p.seq_length} exceeds the {cfg.embedding.max_seq_length} positions "
            "the embedding has (model.max_seq_length)"
        )
    tokenizer = tokenizer_from_config(cfg)
    summary = build_pretrain_dataset(
        p.corpus_path, p.dataset_path, tokenizer, cfg.target.type,
        seq_length=p.seq_length, dup_factor=p.dup_factor, short_seq_prob=p.short_seq_prob,
        full_sentences=p.full_sentences, docs_buffer_size=p.docs_buffer_size, processes_num=p.processes_num,
        seed=cfg.seed, dynamic_masking=p.dynamic_masking, span_masking=p.span_masking,
        span_geo_prob=p.span_geo_prob, span_max_length=p.span_max_length,
        tokenizer_cfg=tokenizer.identity(),
    )
    return summary
