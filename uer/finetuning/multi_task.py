"""``stage=finetune task=mt_classifier``: one backbone, one classifier head per dataset.

    python main.py stage=finetune task=mt_classifier \
        'task.dataset_paths=[datasets/test_data/book_review,datasets/test_data/chnsenticorp]' \
        output_model_path=outputs/models/mt

Each folder of ``task.dataset_paths`` holds ``train.tsv`` and ``dev.tsv`` (and optionally
``test.tsv``); dataset ``i`` is the ``i``-th folder and has head ``i``
(:mod:`uer.tasks.mt_classifier`).

Batches: every batch comes from one dataset and trains the backbone and that dataset's
head.  An epoch visits every dataset's training rows once (``len(train_i) // batch_size``
batches of dataset ``i``, each dataset reshuffled every epoch as in single-task
fine-tuning), with the batches of all datasets interleaved in a random order drawn from
``(seed, epoch)`` -- so datasets are mixed in proportion to their sizes, as the original
toolkit did.

At every evaluation (after each epoch; see :mod:`uer.finetuning.loop`) every dataset's
``dev.tsv`` is scored with its head; the log and ``results.jsonl`` hold, flat, the mean over
datasets (``acc``, ``macro_f1``) and each dataset's scores (``acc_0``, ``macro_f1_0``,
``acc_1``, ...).  The best evaluation by the mean of ``finetune.metric`` is kept as
``output_model_path/best.pt`` (``last.pt`` beside it: ``resume=true`` continues from there,
at the same position in the interleaved batches); at the end it scores every
folder's ``test.tsv`` that exists (same keys), and ``run`` returns its mean dev score.
``finetune.train_path``/``dev_path``/``test_path`` are not used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from uer.errors import UerError
from uer.finetuning import setup as finetune_setup
from uer.finetuning.batches import SampledBatches
from uer.finetuning.loop import FitOutputs, fit
from uer.finetuning.results import record
from uer.finetuning.scores import evaluate, format_scores
from uer.io.checkpoint import load_checkpoint
from uer.runtime import run_dir
from uer.paths import model_dir
from uer.tasks import TASKS, TaskData

log = logging.getLogger("uer.finetune")

FILES = ("train.tsv", "dev.tsv")


def run(cfg: DictConfig) -> float:
    f = cfg.finetune
    folders = dataset_folders(TASKS.build_config(cfg.task).dataset_paths)
    for key in ("train_path", "dev_path", "test_path"):
        if f[key]:
            log.warning("finetune.%s=%s is not used by mt_classifier: each folder of task.dataset_paths holds its "
                        "own train.tsv/dev.tsv/test.tsv", key, f[key])

    setup = finetune_setup.prepare(cfg)
    task = setup.task
    labels_num = task.configured_labels_num
    trains = [task.read_dataset(i, folder / "train.tsv", split="train", labels_num=labels_num,
                                skip_bad_rows=f.skip_bad_rows) for i, folder in enumerate(folders)]
    labels_nums = [labels_num or task.labels_num_from(train) for train in trains]
    task.info["labels_nums"] = labels_nums
    devs = [task.read_dataset(i, folder / "dev.tsv", split="dev", labels_num=labels_nums[i],
                              skip_bad_rows=f.skip_bad_rows) for i, folder in enumerate(folders)]
    tests = [(i, task.read_dataset(i, folder / "test.tsv", split="test", labels_num=labels_nums[i],
                                   skip_bad_rows=f.skip_bad_rows))
             for i, folder in enumerate(folders) if (folder / "test.tsv").is_file()]
    metric = finetune_setup.selection_metric(cfg, setup.task)
    for i, folder in enumerate(folders):
        log.info("%s dataset %d (%s): %d train, %d dev examples, labels_num=%d", task.name, i, folder,
                 len(trains[i]), len(devs[i]), labels_nums[i])

    model = finetune_setup.new_model(setup, None)
    out_dir = model_dir(cfg)
    report_dir = run_dir(out_dir)
    batches = InterleavedBatches(task, trains, f.batch_size, cfg.seed, folders, f.length_bucketing)

    def scores_on(scored: nn.Module, datasets: list[tuple[int, TaskData]]) -> dict[str, float]:
        per = {i: evaluate(setup, scored, data, labels_nums[i]) for i, data in datasets}
        names = list(next(iter(per.values())))
        flat = {name: float(np.mean([scores[name] for scores in per.values()])) for name in names}
        for i, scores in per.items():
            flat.update({f"{name}_{i}": value for name, value in scores.items()})
        return flat

    best = fit(setup, model, batches, lambda scored: scores_on(scored, list(enumerate(devs))),
               FitOutputs(model_dir=out_dir, report_dir=report_dir), metric=metric,
               data_files=[folder / name for folder in folders for name in FILES],
               checkpoint_config=finetune_setup.checkpoint_config(setup))
    if tests:
        model.load_state_dict(load_checkpoint(best.path)["model"])
        scores = scores_on(model, tests)
        log.info("test (epoch %s model, step %d): %s", best.epoch, best.step, format_scores(scores))
        record(report_dir, {"split": "test", "epoch": best.epoch, "step": best.step, **scores})
    return float(best.score)


def dataset_folders(paths) -> list[Path]:
    """``task.dataset_paths`` as folders, each checked to hold train.tsv and dev.tsv."""
    example = "task.dataset_paths=[datasets/test_data/book_review,datasets/test_data/chnsenticorp]"
    if not paths:
        raise UerError(f"task.dataset_paths is empty; mt_classifier needs the folders of its datasets, e.g. {example}")
    folders = [Path(path) for path in paths]
    for i, folder in enumerate(folders):
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "not found"
            raise UerError(f"task.dataset_paths[{i}]={folder}: folder {what}; each entry is a folder holding "
                           "train.tsv and dev.tsv")
        for name in FILES:
            if not (folder / name).is_file():
                raise UerError(f"task.dataset_paths[{i}]={folder} has no {name} ({folder / name} not found); "
                               "each folder needs train.tsv and dev.tsv in the classifier's TSV format")
    return folders


class InterleavedBatches:
    """Batches of several datasets, each batch from one; an epoch interleaves all their batches at random."""

    def __init__(self, task, datasets: list[TaskData], batch_size: int, seed: int, folders: list[Path],
                 length_bucketing: bool = False):
        self.sources = [SampledBatches(task, data.examples, batch_size, seed + i,
                                       source=f"task.dataset_paths[{i}] {folders[i] / 'train.tsv'}",
                                       length_bucketing=length_bucketing)
                        for i, data in enumerate(datasets)]
        self.counts = [source.batches_per_epoch for source in self.sources]
        self.batches_per_epoch = sum(self.counts)
        self.seed = seed
        self.epoch = 0
        self.cursor = 0
        self._order = None

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            owners = np.repeat(np.arange(len(self.sources)), self.counts)
            self._order = np.random.default_rng([self.seed, self.epoch, len(self.sources)]).permutation(owners)
        return self._order

    def next_batch(self) -> dict:
        if self.cursor >= self.batches_per_epoch:
            self.epoch += 1
            self.cursor = 0
            self._order = None
        index = int(self._epoch_order()[self.cursor])
        self.cursor += 1
        batch = self.sources[index].next_batch()
        batch["dataset"] = torch.full((batch["src"].size(0),), index, dtype=torch.long)
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "sources": [source.state_dict() for source in self.sources]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["sources"]) != len(self.sources):
            raise UerError(f"the checkpoint was trained on {len(state['sources'])} datasets, this run has "
                           f"{len(self.sources)}; resume with the same task.dataset_paths")
        for source, saved in zip(self.sources, state["sources"]):
            source.load_state_dict(saved)
        self.epoch, self.cursor, self._order = state["epoch"], state["cursor"], None
