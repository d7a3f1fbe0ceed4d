"""Held-out evaluation during pre-training (``pretrain.dev_dataset_path``): loss, accuracy and perplexity.

The dev dataset is one ``stage=preprocess`` wrote for the training's target and tokenizer, or a
held-out corpus (a text file) that :func:`build_dev_dataset` preprocesses as the training dataset
was, into the run directory, before any worker starts.
Every evaluation scores every instance of it with the same masked positions: static masks
as stored, dynamic masks drawn from ``(DEV_MASK_SEED, DEV_EPOCH)`` (:meth:`PretrainDataset.batch`
draws them per instance, whatever batch it lands in), so two evaluations differ only by the
weights, and runs with other seeds are scored on the same positions.

The model is scored in eval mode (no dropout), without gradients, and nothing random is
drawn, so a run with validation trains exactly as one without.  Rank ``r`` of ``W`` scores
instances ``r, r+W, ...`` of the dev set ordered by length (batches of similar lengths, little
padding); the ranks sum each statistic's numerator and denominator, so every rank gets the
number one process would (up to float summation order).

The numbers, per part of the target (``mlm``, ``nsp``, ``lm``, ...): ``{part}_loss`` (mean
cross-entropy over the part's predictions in the whole set: masked tokens for mlm, next tokens
for lm, sentence pairs for nsp/sop), ``{part}_acc``, and for the parts that predict tokens
(:data:`TOKEN_PARTS`) ``{part}_ppl = exp({part}_loss)``, the per-token perplexity.  A sentence
head (bert's nsp, albert's sop, cls) gets loss and accuracy only: the exp of a two-way
classifier's loss is no perplexity of text.  ``loss`` is the sum of the parts' losses, as the
training loss is: the number runs are compared by.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from uer.data.build import build_pretrain_dataset
from uer.data.noising import preprocess_options
from uer.data.pretrain_dataset import PretrainDataset
from uer.distributed import all_reduce_sum
from uer.errors import UerError
from uer.outcome import RESULTS, read_jsonl
from uer.training.fsdp import is_sharded
from uer.training.report import Reporter, append_record
from uer.training.trainer import to_device

log = logging.getLogger("uer.train")

DEV_MASK_SEED = 0  # dynamic masks of the dev set: the same positions in every evaluation and every run
DEV_EPOCH = 0
# the parts that predict vocabulary tokens: perplexity
TOKEN_PARTS = ("mlm", "lm", "prefixlm", "lm_forward", "lm_backward", "seq2seq", "t5", "bart")
SPLIT = "dev"
METRIC = "loss"
DEV_DATASET = "heldout_dataset"  # where a held-out corpus is preprocessed, in the run directory
BUILD_HINT = ("give a held-out corpus (a text file) or a dataset built by python main.py stage=preprocess "
              "target=TARGET preprocess.corpus_path=HELD_OUT.txt preprocess.dataset_path=DIR with the training "
              "dataset's tokenizer, seq_length and masking options")
SPAN_OPTIONS = ("span_masking", "span_geo_prob", "span_max_length")


def build_dev_dataset(corpus_path: str, train_path: str, tokenizer, run_directory: Path) -> Path:
    """``corpus_path`` preprocessed as the training dataset was (the options its meta.json records: target,
    seq_length, sentence options, seed, masking, whole-word segmentation, text-to-text noising and target
    length) into ``run_directory/heldout_dataset``; one copy of each instance (dup_factor 1), built in this
    process."""
    meta = PretrainDataset(train_path, check_values=False).meta
    options = {name: meta["masking"][name] for name in SPAN_OPTIONS} if meta["masking"] else {}
    words = meta.get("word_segmentation")  # whole-word masking: the same segmenter and dictionary
    if words is not None:
        options.update(whole_word_masking=True, word_segmenter=words["segmenter"], segmenter_dict=words.get("dict"))
    options.update(preprocess_options(meta))
    path = Path(run_directory) / DEV_DATASET
    log.info("held-out corpus %s: preprocessing it as %s was", corpus_path, train_path)
    build_pretrain_dataset(corpus_path, path, tokenizer, meta["target"], seq_length=meta["seq_length"],
                           short_seq_prob=meta["short_seq_prob"], full_sentences=meta["full_sentences"],
                           docs_buffer_size=meta["docs_buffer_size"], seed=meta["seed"],
                           dynamic_masking=meta["dynamic_masking"], tokenizer_cfg=tokenizer.identity(), **options)
    return path


def open_dev_dataset(dev_path: str, train_path: str, target: str, positions: int | None,
                     world_size: int, decoder: bool = False) -> PretrainDataset:
    """The dev dataset, checked against the training dataset it must match: same target and tokenizer (the
    training dataset is checked against the run's tokenizer), instances (and targets, for a ``decoder``) that
    fit the embedding's positions, at least one instance for each of the ``world_size`` processes that score it."""
    key = f"pretrain.dev_dataset_path={dev_path}"
    if not Path(dev_path).is_dir():
        raise UerError(f"{key} is neither a file nor a directory; {BUILD_HINT}")
    if Path(dev_path).resolve() == Path(train_path).resolve():
        log.warning("%s is the training dataset itself: its loss is no held-out loss", key)
    dev = PretrainDataset(dev_path)
    train = PretrainDataset(train_path, check_values=False)
    if dev.target != target:
        raise UerError(f"{key} was built for target {dev.target!r}, the run trains target {target!r}; "
                       f"{BUILD_HINT.replace('TARGET', target)}")
    differing = sorted(name for name in set(dev.meta["tokenizer"]) | set(train.meta["tokenizer"])
                       if dev.meta["tokenizer"].get(name) != train.meta["tokenizer"].get(name))
    if differing:
        raise UerError(f"{key} was built with another tokenizer than pretrain.dataset_path={train_path} "
                       f"(they differ in {', '.join(differing)}); {BUILD_HINT.replace('TARGET', target)}")
    check_positions(dev, "pretrain.dev_dataset_path", positions, decoder)
    if len(dev) < world_size:
        raise UerError(f"{key} has {len(dev)} instances, fewer than the {world_size} processes that score it; "
                       "use a larger held-out corpus")
    return dev


def check_positions(dataset: PretrainDataset, key: str, positions: int | None, decoder: bool = False) -> None:
    """A dataset whose instances are longer than the embedding's positions is refused, and with a ``decoder``
    (whose embedding has as many positions), one whose targets are longer than that."""
    if positions is None:
        return
    if dataset.meta["seq_length"] > positions:
        raise UerError(f"{key}={dataset.path} has seq_length {dataset.meta['seq_length']} but the embedding has "
                       f"only {positions} positions; raise model.max_seq_length or re-run preprocess")
    targets = dataset.meta.get("tgt_seq_length")
    if decoder and targets is not None and targets > positions:
        raise UerError(f"{key}={dataset.path} has targets of up to {targets} tokens (tgt_seq_length) but the "
                       f"decoder's embedding has only {positions} positions; raise model.max_seq_length or re-run "
                       "preprocess with a smaller preprocess.tgt_seq_length")


class HeldOutSet:
    """This rank's share of the dev dataset (at least one instance: checked before workers start), in fixed
    batches, and what scoring a model on it gives."""

    def __init__(self, dataset: PretrainDataset, batch_size: int, *, rank: int, world_size: int,
                 device: torch.device):
        self.dataset, self.device = dataset, device
        by_length = np.argsort(dataset.lengths(), kind="stable")
        mine = by_length[rank::world_size]
        self.batches = [mine[start:start + batch_size] for start in range(0, len(mine), batch_size)]
        # Rank 0 holds the most batches; a sharded model's forward is a collective (each FSDP unit gathers its
        # weights), so a rank with fewer repeats its last one that many times, uncounted, to keep in step.
        self.catch_up = math.ceil(len(by_length[0::world_size]) / batch_size) - len(self.batches)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, autocast: Callable) -> dict[str, float]:
        """Every rank's sums of each statistic, reduced, as the numbers of the module docstring."""
        was_training = model.training
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        try:
            for indices in self.batches:
                batch = to_device(self.dataset.batch(indices, DEV_EPOCH, DEV_MASK_SEED), self.device)
                with autocast():
                    stats = model(batch).stats
                for name, (num, den) in stats.items():
                    pair = torch.stack((num.double(), den.double()))
                    sums[name] = pair if name not in sums else sums[name] + pair
            for _ in range(self.catch_up if is_sharded(model) else 0):
                with autocast():
                    model(batch)
        finally:
            model.train(was_training)
        names = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[name] for name in names])).cpu().tolist()
        return heldout_numbers({name: tuple(pair) for name, pair in zip(names, totals)})


def heldout_numbers(totals: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``loss`` and each part's loss, accuracy and (token parts) perplexity from ``name -> (sum, count)``."""
    values = {name: num / den if den > 0 else float("nan") for name, (num, den) in totals.items()}
    parts = sorted(name[:-len("_loss")] for name in values if name.endswith("_loss"))
    numbers = {METRIC: sum(values[f"{part}_loss"] for part in parts)}
    for part in parts:
        numbers[f"{part}_loss"] = values[f"{part}_loss"]
        if f"{part}_acc" in values:
            numbers[f"{part}_acc"] = values[f"{part}_acc"]
        if part in TOKEN_PARTS:
            numbers[f"{part}_ppl"] = _perplexity(values[f"{part}_loss"])
    return numbers


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")  # exp overflows a float above ~709


class Validation:
    """When to score the dev set, and what becomes of each score: the log line, ``metrics.jsonl`` and the
    logger (through the ``reporter``), ``results.jsonl`` in ``report_dir``, and the best loss so far, which a
    resumed run takes over from its checkpoint (:meth:`state_dict`)."""

    def __init__(self, heldout: HeldOutSet, model: nn.Module, autocast: Callable, reporter: Reporter, *,
                 eval_steps: int | None, report_dir: Path, is_main: bool):
        self.heldout, self.model, self.autocast, self.reporter = heldout, model, autocast, reporter
        self.eval_steps, self.report_dir, self.is_main = eval_steps, report_dir, is_main
        self.records: list[dict] = []  # every evaluation of the run so far, as in results.jsonl

    def due(self, step: int, saving: bool, end: bool) -> bool:
        """At every ``eval_steps`` steps (null: at every checkpoint) and at the end."""
        return end or (saving if self.eval_steps is None else step % self.eval_steps == 0)

    @property
    def best(self) -> dict | None:
        scored = [r for r in self.records if math.isfinite(r[METRIC])]
        return min(scored, key=lambda r: r[METRIC]) if scored else None

    def evaluate(self, step: int) -> bool:
        """Score the dev set at ``step`` and record it; True when its loss is the best so far (every rank agrees)."""
        best = self.best
        with self.reporter.not_training():
            values = self.heldout.evaluate(self.model, self.autocast)
        record = {"split": SPLIT, "step": step, "metric": METRIC, **values}
        self.records.append(record)
        if self.is_main:
            self.reporter.evaluation(SPLIT, step, values)
            append_record(self.report_dir / RESULTS, record)
        return math.isfinite(values[METRIC]) and (best is None or values[METRIC] < best[METRIC])

    def state_dict(self) -> dict:
        return {"dataset": self.heldout.dataset.fingerprint(), "records": list(self.records)}

    def load_state_dict(self, state: dict | None) -> None:
        """Take over a resumed run's earlier evaluations, writing those ``results.jsonl`` lacks (a resumed run
        usually has a new run directory) so that it holds every evaluation of the run.  Evaluations of
        another held-out set are not comparable: the best loss starts afresh."""
        state = state or {}
        if state.get("records") and state.get("dataset") != self.heldout.dataset.fingerprint():
            log.warning("pretrain.dev_dataset_path holds another dataset than the run was scored on so far: its "
                        "earlier held-out numbers are not carried over, and the best held-out loss starts afresh")
            return
        self.records = list(state.get("records", []))
        if not self.is_main:
            return
        path = self.report_dir / RESULTS
        present = {r.get("step") for r in read_jsonl(path) if r.get("split") == SPLIT}
        for record in self.records:
            if record["step"] not in present:
                append_record(path, record)

