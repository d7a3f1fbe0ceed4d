"""Scores for predicted class ids against gold ones: accuracy and macro-averaged F1; and the
per-class report people read (precision, recall, F1 and support of each class, the
confusion matrix; its table for logs and TensorBoard is :func:`uer.training.tables.report_table`).

Macro-F1 is the unweighted mean of per-class F1 over the classes that occur in the gold
labels or in the predictions (a class that is neither predicted nor present cannot be
scored and is left out); a class with no true positives scores 0.

Multi-label scores (each example holds a set of labels) count, per label, the examples that
hold it in gold and prediction (true positives), in prediction only (false positives) and in
gold only (false negatives).  Micro-F1 is the F1 of those counts summed over labels,
``2 TP / (2 TP + FP + FN)``; macro-F1 the unweighted mean of per-label F1, by the rule above:
a label neither gold nor predicted on any example is left out.  ``acc`` is the fraction of
examples whose predicted set equals the gold set (exact match; two empty sets are equal).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def confusion_matrix(gold: Sequence[int], pred: Sequence[int], labels_num: int | None = None) -> np.ndarray:
    """``m[g, p]`` = how many examples of gold class ``g`` were predicted as ``p``."""
    gold, pred = _arrays(gold, pred)
    n = labels_num if labels_num is not None else int(max(gold.max(initial=-1), pred.max(initial=-1))) + 1
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (gold, pred), 1)
    return matrix


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    gold, pred = _arrays(gold, pred)
    return float((gold == pred).mean()) if len(gold) else 0.0


def per_class_prf(gold: Sequence[int], pred: Sequence[int], labels_num: int | None = None) -> dict[int, tuple]:
    """``class -> (precision, recall, f1, support)`` for each class seen in gold or predictions."""
    matrix = confusion_matrix(gold, pred, labels_num)
    out = {}
    for c in _seen(matrix):
        support = int(matrix[c, :].sum())
        out[c] = (*prf(int(matrix[c, c]), int(matrix[:, c].sum()), support), support)
    return out


def macro_f1(gold: Sequence[int], pred: Sequence[int], labels_num: int | None = None) -> float:
    scores = per_class_prf(gold, pred, labels_num)
    return float(np.mean([f1 for _, _, f1, _ in scores.values()])) if scores else 0.0


def classification_metrics(gold: Sequence[int], pred: Sequence[int], labels_num: int | None = None) -> dict:
    return {"acc": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred, labels_num)}


def prf(right: int, predicted: int, expected: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; each is 0 where its denominator is 0."""
    precision = right / predicted if predicted else 0.0
    recall = right / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def class_report(gold: Sequence[int], pred: Sequence[int], labels_num: int | None = None) -> dict:
    """``{"per_class": {label: {precision, recall, f1, support}}, "confusion": [[...]]}`` (labels as strings,
    ``confusion[g][p]`` = examples of gold class ``g`` predicted as ``p``), JSON as it is."""
    return {"per_class": per_class_rows(per_class_prf(gold, pred, labels_num)),
            "confusion": confusion_matrix(gold, pred, labels_num).tolist()}


def per_class_rows(scores: dict[int, tuple]) -> dict[str, dict]:
    """``{class: (precision, recall, f1, support)}`` as a report's ``per_class`` (classes as strings)."""
    return {str(c): {"precision": p, "recall": r, "f1": f, "support": n} for c, (p, r, f, n) in scores.items()}


def multilabel_prf(gold, pred) -> dict[int, tuple]:
    """``label -> (precision, recall, f1, support)`` for each label gold or predicted on some example;
    ``gold`` and ``pred`` are 0/1 arrays of shape (examples, labels)."""
    gold, pred = _label_sets(gold, pred)
    right, predicted, expected = (gold & pred).sum(axis=0), pred.sum(axis=0), gold.sum(axis=0)
    return {label: (*prf(int(right[label]), int(predicted[label]), int(expected[label])), int(expected[label]))
            for label in range(gold.shape[1]) if predicted[label] or expected[label]}


def multilabel_metrics(gold, pred) -> dict:
    """``micro_f1``, ``macro_f1`` and ``acc`` (exact match) of label sets (0/1 arrays of shape (examples, labels))."""
    gold, pred = _label_sets(gold, pred)
    micro = prf(int((gold & pred).sum()), int(pred.sum()), int(gold.sum()))[2]
    scores = multilabel_prf(gold, pred)
    macro = float(np.mean([f1 for _, _, f1, _ in scores.values()])) if scores else 0.0
    exact = float((gold == pred).all(axis=1).mean()) if len(gold) else 0.0
    return {"micro_f1": micro, "macro_f1": macro, "acc": exact}


def multilabel_report(gold, pred) -> dict:
    """``{"per_class": {label: {precision, recall, f1, support}}}`` of label sets, as :func:`class_report`."""
    return {"per_class": per_class_rows(multilabel_prf(gold, pred))}


def _label_sets(gold, pred) -> tuple[np.ndarray, np.ndarray]:
    gold, pred = np.asarray(gold).astype(bool), np.asarray(pred).astype(bool)
    if gold.shape != pred.shape or gold.ndim != 2:
        raise ValueError(f"gold labels of shape {gold.shape} but predictions of shape {pred.shape}; "
                         "both must be (examples, labels)")
    return gold, pred


def _seen(matrix: np.ndarray) -> Iterable[int]:
    return [c for c in range(len(matrix)) if matrix[c, :].sum() or matrix[:, c].sum()]


def _arrays(gold, pred) -> tuple[np.ndarray, np.ndarray]:
    gold, pred = np.asarray(gold, dtype=np.int64).reshape(-1), np.asarray(pred, dtype=np.int64).reshape(-1)
    if gold.shape != pred.shape:
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    return gold, pred
