"""k-fold cross-validation of the classifier (the original toolkit's ``run_classifier_cv.py``).

Same files, inputs and head as ``task=classifier``; what differs is how it is
fine-tuned (:mod:`uer.finetuning.cross_validation`): the training file is split into
``task.folds_num`` folds, one model is trained per fold on the other folds (its held-out
fold plays dev), and the out-of-fold class probabilities of every training row are
written to ``task.train_features_path`` -- features for stacking a second-level model.
``stage=infer`` on the output directory averages the fold models' probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from uer.config.fields import at_least, setting
from uer.errors import UerError
from uer.tasks import TASKS
from uer.tasks.classifier import ClassifierConfig, ClassifierTask


@dataclass
class ClassifierCvConfig(ClassifierConfig):
    """``task=classifier_cv``: the classifier, cross-validated."""

    folds_num: int = setting(5, "number of folds (at least 2, at most the number of training rows)", bounds=at_least(2))
    train_features_path: Optional[str] = setting(
        None, "out-of-fold probabilities (.npy, rows x labels_num, file order); null = train_features.npy beside "
              "the fold models")


@TASKS.register("classifier_cv", config=ClassifierCvConfig)
class ClassifierCvTask(ClassifierTask):
    name = "classifier_cv"
    finetune_runner = "cross_validation"


def assign_folds(labels, folds_num: int, seed: int) -> np.ndarray:
    """The fold (0 .. folds_num-1) of each row, stratified by label and fixed by ``seed``.

    Rows of each label, in a seeded random order, are dealt to the folds in turn; the
    dealing goes on from label to label where the previous one stopped, so fold sizes
    differ by at most one and every label is spread as evenly as its count allows.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if folds_num < 2:
        raise UerError(f"task.folds_num={folds_num}: cross-validation needs at least 2 folds")
    if folds_num > len(labels):
        raise UerError(f"task.folds_num={folds_num} exceeds the {len(labels)} training rows; "
                       f"use task.folds_num={len(labels)} or less")
    rng = np.random.default_rng([seed, folds_num])
    folds = np.empty(len(labels), dtype=np.int64)
    dealt = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        folds[rows] = (dealt + np.arange(len(rows))) % folds_num
        dealt += len(rows)
    return folds
