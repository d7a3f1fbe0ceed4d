"""Corpus -> pre-training dataset directory, in parallel and reproducibly.

The corpus is indexed once (validation + document byte offsets), then cut into *units*
of consecutive documents: a ``docs_buffer_size`` buffer where instances mix documents
(bert/albert pick random next sentences from the buffer, ``full_sentences`` shuffles it),
otherwise the documents starting in the same ``UNIT_BYTES`` stretch of the file.  Unit
boundaries depend only on the corpus and the options, and every random draw for a unit
comes from ``np.random.default_rng([seed, repeat, unit])``, so the dataset is
byte-identical whatever ``processes_num`` is: workers (spawned processes) write one shard
per unit and the parent merges the shards in unit order.

``dup_factor`` repeats each unit with fresh random draws (masks, shuffles, pairs).  When
a repetition could only reproduce the same instances -- mlm, t5 or bart with dynamic masking
(noising), or lm, without ``full_sentences`` -- it is stored once (``meta["stored_repeats"]``): dynamic
masking already varies the masks every epoch.

The dataset is built in a temporary directory beside ``dataset_path`` and moved into
place only when complete, replacing only the files an earlier dataset there was made of
(:func:`uer.io.outputs.replace_tree`: other files in the directory stay); on any error the
temporary directory is removed and an existing dataset is left as it was.

Dataset directory (1-d ``.npy`` arrays, memory-mapped by the reader)::

    meta.json            format/version, target, options, seed, masking scheme,
                         tokenizer identity, corpus path/size, counts, array dtypes/shapes
    tokens.npy           all instances' token ids, flat (uint16 when the vocab fits, else int32);
                         statically masked instances are stored already corrupted
    offsets.npy          int64, n+1: instance i is tokens[offsets[i]:offsets[i+1]]
    seg_a_len.npy        length of the first segment incl. [CLS] and its [SEP] (whole instance
                         for mlm/lm; seq2seq and noised t5/bart: the encoder's part of the pair,
                         the rest is [CLS] target [SEP] for the decoder; meta.json adds
                         tgt_seq_length, and for t5/bart the noising scheme and sep_id)
    sentence_label.npy   int8, bert/albert only (see uer.data.instances)
    label.npy            int32, cls only: the class of each instance
    mask_positions.npy   static masking only: positions within the instance, flat
    mask_labels.npy      ... the original ids there
    mask_offsets.npy     int64, n+1: instance i's masks are [mask_offsets[i]:mask_offsets[i+1]]
    word_starts.npy      uint8, whole-word masking only: 1 where a token starts a word
                         (uer.data.segmentation), read by static and dynamic masking alike
"""

from __future__ import annotations

import ctypes
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uer.data.corpus import CorpusIndex, index_corpus, read_documents
from uer.data.instances import INSTANCE_BUILDERS, InstanceOptions, TokenizedDocuments, build_instances
from uer.data.masking import MaskingScheme, mask_instances
from uer.data.noising import SpanCorruption, TextInfilling, noise_block, sentinel_ids
from uer.data.segmentation import WordSegmenter, line_word_starts
from uer.data.mmap_dataset import merge_shards, save_arrays
from uer.errors import UerError
from uer.io.atomic import reporting_write_errors
from uer.io.outputs import MANIFEST, replace_tree
from uer.progress import Progress

logger = logging.getLogger("uer.preprocess")

FORMAT = "uer-pretrain-dataset"
FORMAT_VERSION = 1
META_FILE = "meta.json"
UNIT_BYTES = 1 << 18
ENCODE_LINES = 8192
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class BuildJob:
    """What a worker needs, besides the tokenizer, to build any unit (picklable)."""

    corpus_path: str
    target: str
    options: InstanceOptions
    masking: MaskingScheme | None  # set for static masking only
    seed: int
    repeats: int
    token_dtype: str
    position_dtype: str
    shard_root: str
    segmenter: WordSegmenter | None = None  # whole-word masking: how lines are cut into words
    noising: SpanCorruption | TextInfilling | None = None  # t5, bart with static noising

    def shard_dir(self, unit: int) -> Path:
        return Path(self.shard_root) / f"{unit:07d}"


def build_pretrain_dataset(corpus_path, dataset_path, tokenizer, target: str, *, seq_length: int = 128,
                           dup_factor: int = 1, short_seq_prob: float = 0.1, full_sentences: bool = False,
                           docs_buffer_size: int = 100000, processes_num: int = 1, seed: int = 7,
                           dynamic_masking: bool = False, span_masking: bool = False,
                           span_geo_prob: float = 0.2, span_max_length: int = 10,
                           whole_word_masking: bool = False, word_segmenter: str = "jieba",
                           segmenter_dict: str | None = None, tokenizer_cfg: dict | None = None,
                           tgt_seq_length: int | None = None, t5_noise_density: float = 0.15,
                           t5_mean_span_length: float = 3.0, bart_mask_ratio: float = 0.3,
                           bart_poisson_lambda: float = 3.0, bart_permute_sentences: bool = True) -> dict:
    """Build the dataset; returns counts (documents, instances, tokens) and seconds.

    Worker processes receive the tokenizer pickled.  ``tokenizer_cfg``, the settings the
    tokenizer was built from, is only recorded in meta.json (``tokenizer_settings``) so a
    user can see how to rebuild a compatible dataset; ``tokenizer.identity()`` is what
    compatibility checks compare.
    """
    started = time.perf_counter()
    if target not in INSTANCE_BUILDERS:
        raise UerError(f"unknown pre-training target {target!r}; set target= one of {', '.join(INSTANCE_BUILDERS.names())}")
    builder = INSTANCE_BUILDERS.get(target)
    _check_options(builder, seq_length=seq_length, dup_factor=dup_factor, short_seq_prob=short_seq_prob,
                   docs_buffer_size=docs_buffer_size, processes_num=processes_num, seed=seed,
                   dynamic_masking=dynamic_masking, span_masking=span_masking,
                   span_geo_prob=span_geo_prob, span_max_length=span_max_length,
                   whole_word_masking=whole_word_masking, tgt_seq_length=tgt_seq_length,
                   t5_noise_density=t5_noise_density, t5_mean_span_length=t5_mean_span_length,
                   bart_mask_ratio=bart_mask_ratio, bart_poisson_lambda=bart_poisson_lambda)
    segmenter = WordSegmenter(word_segmenter, segmenter_dict) if whole_word_masking else None
    if segmenter is not None:
        segmenter.check()
    elif segmenter_dict:
        raise UerError("preprocess.segmenter_dict is read only with preprocess.whole_word_masking=true; "
                       "set that too, or unset segmenter_dict")
    # Instances are framed [CLS] A [SEP] (B [SEP]); masking and infilling write [MASK].
    roles = ("mask", "cls", "sep") if builder.masked or target == "bart" else ("cls", "sep")
    tokenizer.vocab.require(roles, f"stage=preprocess target={target}")
    dataset_path = Path(dataset_path)
    _check_replaceable(dataset_path)
    index = index_corpus(corpus_path, builder.layout)
    _check_next_sentences(builder, target, corpus_path, len(index), docs_buffer_size)

    vocab = tokenizer.vocab
    options = InstanceOptions(seq_length, full_sentences, short_seq_prob, vocab.cls_id, vocab.sep_id,
                              tgt_seq_length if builder.pair else None)
    masking = None
    if builder.masked:
        masking = MaskingScheme(len(vocab), vocab.mask_id, tuple(sorted(vocab.special_ids)),
                                span_masking, span_geo_prob, span_max_length, whole_word_masking)
    noising = None
    if target == "t5":
        needed = max(SpanCorruption.spans_for(n, t5_noise_density, t5_mean_span_length)[1]
                     for n in range(seq_length - 1))
        noising = SpanCorruption(t5_noise_density, t5_mean_span_length, sentinel_ids(vocab, needed, seq_length))
    elif target == "bart":
        noising = TextInfilling(bart_mask_ratio, bart_poisson_lambda, bart_permute_sentences, vocab.mask_id,
                                vocab.sep_id)
    static = (masking is not None or noising is not None) and not dynamic_masking
    repeats = dup_factor if static or builder.randomized(options) else 1
    units = _plan_units(index, docs_buffer_size if builder.uses_buffers(options) else None)

    dataset_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dataset_path.parent / f".{dataset_path.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        job = BuildJob(
            corpus_path=str(corpus_path), target=target, options=options,
            masking=masking if static else None, seed=seed, repeats=repeats,
            token_dtype="<u2" if len(vocab) <= 1 << 16 else "<i4",
            position_dtype="<u2" if seq_length + 1 < 1 << 16 else "<i4",
            shard_root=str(tmp / "shards"), segmenter=segmenter, noising=noising if static else None,
        )
        with reporting_write_errors(dataset_path):
            totals = _run_units(job, index, units, tokenizer, processes_num)
        if totals["instances"] == 0:
            raise UerError(f"corpus {corpus_path} yields no {target} instances: its documents are empty after "
                           "tokenization or too short to split into two segments; check the corpus and the "
                           "tokenizer settings")
        flat = ["tokens", "seg_a_len"] + ["sentence_label"] * bool(builder.sentence_task)
        flat += ["label"] * builder.labelled
        flat += ["word_starts"] * bool(segmenter)
        counts = {"lengths": "offsets"}
        if static and masking is not None:
            flat += ["mask_positions", "mask_labels"]
            counts["mask_counts"] = "mask_offsets"
        with reporting_write_errors(dataset_path):
            arrays = merge_shards([job.shard_dir(u) for u in range(len(units))], tmp, flat, counts)
        shutil.rmtree(job.shard_root)
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "target": target,
            "seq_length": seq_length, "full_sentences": full_sentences, "short_seq_prob": short_seq_prob,
            "docs_buffer_size": docs_buffer_size, "dup_factor": dup_factor, "stored_repeats": repeats,
            "seed": seed, "dynamic_masking": bool(dynamic_masking),
            "masking": masking.to_dict() if masking else None,
            **({"word_segmentation": segmenter.describe()} if segmenter else {}),
            **({"noising": noising.to_dict(), "sep_id": vocab.sep_id} if noising else {}),
            **({"tgt_seq_length": tgt_seq_length or seq_length} if builder.pair or builder.noised else {}),
            "tokenizer": tokenizer.identity(),
            "tokenizer_settings": dict(tokenizer_cfg) if tokenizer_cfg is not None else None,
            "corpus": {"path": os.path.abspath(corpus_path), "bytes": index.size},
            "counts": {"documents": len(index), **totals},
            "arrays": arrays,
        }
        with reporting_write_errors(dataset_path):
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            replace_tree(tmp, dataset_path, default=dataset_files(dataset_path), key_file=META_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    seconds = time.perf_counter() - started
    summary = {"documents": len(index), "instances": totals["instances"], "tokens": totals["tokens"],
               "seconds": seconds}
    logger.info("%s: %d documents -> %d %s instances, %d tokens in %.1fs (%.0f tokens/s) -> %s",
                corpus_path, len(index), totals["instances"], target, totals["tokens"], seconds,
                totals["tokens"] / max(seconds, 1e-9), dataset_path)
    return summary


def build_unit(job: BuildJob, tokenizer, unit: int, starts: np.ndarray, ends: np.ndarray) -> dict:
    """Build every repetition of one unit and write its shard; returns its counts."""
    lines, line_counts = read_documents(job.corpus_path, starts, ends)
    builder = INSTANCE_BUILDERS.get(job.target)
    lines, line_counts, labels = builder.parse_documents(lines, line_counts, job.corpus_path, starts)
    docs = tokenize_documents(tokenizer, lines, line_counts, np.dtype(job.token_dtype), labels, job.segmenter)
    parts = []
    for repeat in range(job.repeats):
        rng = np.random.default_rng([job.seed, repeat, unit])
        block = build_instances(builder, docs, rng, job.options)
        if job.noising is not None:
            block = noise_block(block, rng, job.noising, job.options)
        arrays = {"tokens": block.tokens, "lengths": block.lengths, "seg_a_len": block.seg_a_len}
        if block.sentence_label is not None:
            arrays["sentence_label"] = block.sentence_label
        if block.label is not None:
            arrays["label"] = block.label
        if block.word_starts is not None:
            arrays["word_starts"] = block.word_starts
        if job.masking is not None:
            masked = mask_instances(block.tokens, block.offsets, rng, job.masking, block.word_starts)
            arrays.update(tokens=masked.tokens, mask_positions=masked.positions,
                          mask_labels=masked.labels, mask_counts=masked.counts)
        parts.append(arrays)
    dtypes = {"tokens": job.token_dtype, "mask_labels": job.token_dtype, "seg_a_len": job.position_dtype,
              "mask_positions": job.position_dtype, "sentence_label": "i1", "label": "<i4",
              "word_starts": "u1"}
    shard = {name: np.concatenate([part[name] for part in parts]).astype(dtypes.get(name, "<i4"))
             for name in parts[0]}
    save_arrays(job.shard_dir(unit), shard)  # a failed write is worded for the dataset (build_pretrain_dataset)
    masked_tokens = len(shard["mask_positions"]) if "mask_positions" in shard else 0
    return {"instances": len(shard["lengths"]), "tokens": len(shard["tokens"]), "masked_tokens": masked_tokens}


def tokenize_documents(tokenizer, lines: list[str], line_counts: list[int], dtype: np.dtype,
                       labels: np.ndarray | None = None, segmenter: WordSegmenter | None = None) -> TokenizedDocuments:
    """Encode the lines in batches; lines and documents without any token are dropped
    (and so are their ``labels``, one per document, where given).  With a ``segmenter`` each
    token also gets whether it starts a word of its line."""
    id_parts, length_parts, start_parts = [], [], []
    for first in range(0, len(lines), ENCODE_LINES):
        batch = lines[first:first + ENCODE_LINES]
        encoded = tokenizer.encode_batch(batch)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        id_parts.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=int(lengths.sum())))
        length_parts.append(lengths)
        if segmenter is not None:
            start_parts += [line_word_starts(line, ids, tokenizer, segmenter) for line, ids in zip(batch, encoded)]
    lengths = np.concatenate(length_parts)
    kept = lengths > 0
    document_of_line = np.repeat(np.arange(len(line_counts)), line_counts)
    per_document = np.bincount(document_of_line[kept], minlength=len(line_counts))
    return TokenizedDocuments(
        ids=np.concatenate(id_parts),
        sentence_offsets=np.concatenate(([0], np.cumsum(lengths[kept]))),
        document_offsets=np.concatenate(([0], np.cumsum(per_document[per_document > 0]))),
        labels=None if labels is None else np.asarray(labels)[per_document > 0],
        word_starts=np.concatenate(start_parts) if segmenter is not None else None,
    )


def _plan_units(index: CorpusIndex, buffer_docs: int | None) -> list[tuple[int, int]]:
    """[first, end) document ranges: fixed-size buffers, or the documents starting in each UNIT_BYTES."""
    if buffer_docs:
        key = np.arange(len(index)) // buffer_docs
    else:
        key = index.starts // UNIT_BYTES
    bounds = [0, *(np.flatnonzero(np.diff(key)) + 1).tolist(), len(index)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_units(job: BuildJob, index: CorpusIndex, units, tokenizer, processes_num: int) -> dict:
    tasks = [(unit, index.starts[a:b], index.ends[a:b]) for unit, (a, b) in enumerate(units)]
    workers = min(processes_num, len(tasks))
    method = _start_method() if workers > 1 else "in-process"
    logger.info("%s: %d documents in %d units, %d process(es) (%s)", job.corpus_path, len(index), len(tasks),
                workers, method)
    totals = {"instances": 0, "tokens": 0, "masked_tokens": 0}
    progress = _Progress(len(tasks))
    if workers == 1:
        for task in tasks:
            progress.add(totals, build_unit(job, tokenizer, *task))
        return totals
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(job, tokenizer, os.getpid())) as pool:
        try:
            for counts in pool.map(_build_unit_in_worker, tasks):
                progress.add(totals, counts)
        except KeyboardInterrupt:  # SIGINT/SIGTERM: stop the workers now, not after their current units
            _stop_workers(pool)
            raise
    return totals


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and kill the workers (this process's only children while it preprocesses), so
    none writes into the temporary dataset the caller removes next."""
    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.kill()
        child.join()


class _Progress:
    """Units done, instances and tokens so far, and the time left (a bar on a terminal, else a line every 10 s)."""

    def __init__(self, units: int):
        self.bar = Progress(units, "preprocess", "units", interval=PROGRESS_SECONDS, logger=logger)

    def add(self, totals: dict, counts: dict) -> None:
        for key, value in counts.items():
            totals[key] += value
        self.bar.update(postfix=f"{totals['instances']:,} instances, {totals['tokens']:,} tokens")
        if self.bar.done >= self.bar.total:
            self.bar.close()


def _start_method() -> str:
    """``fork`` where it exists and no other Python thread runs (so none can hold a lock
    across the fork), as in ``python main.py`` preprocessing: workers then start in
    milliseconds instead of re-importing everything.  Otherwise ``spawn``; everything the
    workers get is picklable, so both work.  (Native thread pools such as OpenBLAS's
    handle fork themselves.)"""
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    return "fork" if fork else "spawn"


_worker: dict = {}


def _init_worker(job: BuildJob, tokenizer, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # The parent handles the stop: Ctrl-C reaches every process of the terminal's group, and a forked
    # worker would inherit the parent's SIGTERM handler (uer.app) and print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker.update(job=job, tokenizer=tokenizer)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this worker when its parent ends, however the parent ends (SIGKILL and the OOM killer included).

    A forked worker shares the parent's open lock file (uer.io.outputs), so an orphan would keep the
    dataset's lock and a rerun would find it "in use" by a dead pid.  On Linux the kernel itself sends
    SIGKILL at the parent's exit (prctl PR_SET_PDEATHSIG): immediate, nothing to run in the worker.
    Elsewhere a daemon thread checks the parent every second."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent ended before the line above took effect
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _build_unit_in_worker(task) -> dict:
    return build_unit(_worker["job"], _worker["tokenizer"], *task)


def _check_options(builder, *, seq_length, dup_factor, short_seq_prob, docs_buffer_size, processes_num, seed,
                   dynamic_masking, span_masking, span_geo_prob, span_max_length, whole_word_masking,
                   tgt_seq_length, t5_noise_density, t5_mean_span_length, bart_mask_ratio,
                   bart_poisson_lambda) -> None:
    problems = []
    if seq_length < 8:
        problems.append(f"preprocess.seq_length={seq_length} must be at least 8")
    for name, value in (("dup_factor", dup_factor), ("docs_buffer_size", docs_buffer_size),
                        ("processes_num", processes_num), ("span_max_length", span_max_length)):
        if value < 1:
            problems.append(f"preprocess.{name}={value} must be at least 1")
    if seed < 0:
        problems.append(f"seed={seed} must not be negative")
    if not 0 <= short_seq_prob <= 1:
        problems.append(f"preprocess.short_seq_prob={short_seq_prob} must lie in [0, 1]")
    if not 0 < span_geo_prob <= 1:
        problems.append(f"preprocess.span_geo_prob={span_geo_prob} must lie in (0, 1]")
    if tgt_seq_length is not None and tgt_seq_length < 2:
        problems.append(f"preprocess.tgt_seq_length={tgt_seq_length} must be at least 2")
    if tgt_seq_length is not None and not builder.pair:
        problems.append("preprocess.tgt_seq_length applies to target=seq2seq only (t5 and bart targets are at most "
                        "seq_length tokens); set it to null")
    if not 0 < t5_noise_density < 1:
        problems.append(f"preprocess.t5_noise_density={t5_noise_density} must lie in (0, 1)")
    if t5_mean_span_length < 1:
        problems.append(f"preprocess.t5_mean_span_length={t5_mean_span_length} must be at least 1")
    if not 0 <= bart_mask_ratio < 1:
        problems.append(f"preprocess.bart_mask_ratio={bart_mask_ratio} must lie in [0, 1)")
    if bart_poisson_lambda <= 0:
        problems.append(f"preprocess.bart_poisson_lambda={bart_poisson_lambda} must be positive")
    if dynamic_masking and not (builder.masked or builder.noised):
        problems.append("preprocess.dynamic_masking applies to the masked-LM targets (mlm, bert, albert) and the "
                        "noised text-to-text ones (t5, bart) only; set it to false")
    if span_masking and not builder.masked:
        problems.append("preprocess.span_masking and its options apply to the masked-LM targets (mlm, bert, albert) "
                        "only; set it to false")
    if whole_word_masking and not builder.masked:
        problems.append("preprocess.whole_word_masking applies to the masked-LM targets (mlm, bert, albert) only; "
                        "set it to false")
    elif whole_word_masking and span_masking:
        problems.append("preprocess.whole_word_masking and preprocess.span_masking both decide which tokens are "
                        "masked together; set one of them to false")
    if problems:
        raise UerError("; ".join(problems))


def _check_next_sentences(builder, target: str, corpus_path, documents: int, docs_buffer_size: int) -> None:
    """Next-sentence prediction draws its random next sentences from other documents of the same buffer:
    with one document to a buffer every label would be "the real next sentence", one class."""
    if builder.sentence_task != "nsp":
        return
    if documents == 1:
        raise UerError(f"corpus {corpus_path} holds a single document, so every next-sentence label of "
                       f"target={target} would be the same class; separate its documents with blank lines (one "
                       "sentence a line), or pre-train with target=mlm")
    if docs_buffer_size == 1:
        raise UerError(f"preprocess.docs_buffer_size=1 puts each document in a buffer of its own, so target={target} "
                       "finds no random next sentence and every next-sentence label would be the same class; raise "
                       "it (the default is 100000)")


def _check_replaceable(path: Path) -> None:
    """Refuse to overwrite anything that is not a dataset (or an empty directory)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise UerError(f"preprocess.dataset_path {path} exists and is not a directory; "
                       "remove it or set preprocess.dataset_path= elsewhere")
    if not (path / META_FILE).is_file() and not (path / MANIFEST).is_file() and any(path.iterdir()):
        raise UerError(f"preprocess.dataset_path {path} is a non-empty directory without {META_FILE}, not a dataset; "
                       "remove it or set preprocess.dataset_path= elsewhere")


def dataset_files(path: Path) -> tuple[str, ...]:
    """The files a dataset written before manifests were kept holds: meta.json and the arrays it names."""
    try:
        arrays = json.loads((path / META_FILE).read_text(encoding="utf-8"))["arrays"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    return (META_FILE, *(f"{name}.npy" for name in arrays))
