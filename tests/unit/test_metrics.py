"""Accuracy, macro-F1 and the per-class report against hand-worked examples."""

import pytest

from uer.tasks.metrics import accuracy, class_report, classification_metrics, confusion_matrix, macro_f1, per_class_prf
from uer.training.tables import report_table


def test_three_class_confusion_by_hand():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    assert confusion_matrix(gold, pred).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # class 0: P 2/2, R 2/3 -> F1 0.8; class 1: P 1/2, R 1/2 -> 0.5; class 2: P 1/2, R 1/1 -> 2/3
    scores = per_class_prf(gold, pred)
    assert scores[0][:3] == pytest.approx((1.0, 2 / 3, 0.8))
    assert scores[1][:3] == pytest.approx((0.5, 0.5, 0.5))
    assert scores[2][:3] == pytest.approx((0.5, 1.0, 2 / 3))
    assert [s[3] for s in scores.values()] == [3, 2, 1]
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    assert macro_f1(gold, pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_class_predicted_but_absent_counts_as_zero_and_unseen_class_is_left_out():
    # class 0: P 1, R 1/2 -> 2/3; class 1 predicted once, never gold -> F1 0; class 2 never seen -> not averaged
    assert macro_f1([0, 0], [0, 1], labels_num=3) == pytest.approx((2 / 3 + 0.0) / 2)


def test_majority_guess_has_high_accuracy_low_macro_f1():
    gold, pred = [0] * 9 + [1], [0] * 10
    scores = classification_metrics(gold, pred, labels_num=2)
    assert scores["acc"] == pytest.approx(0.9)
    # class 0: P 0.9, R 1 -> 18/19; class 1: no true positive -> 0
    assert scores["macro_f1"] == pytest.approx((18 / 19) / 2)


def test_perfect_and_mismatched_lengths():
    assert classification_metrics([1, 0, 2], [1, 0, 2]) == {"acc": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_class_report_is_the_per_label_table_and_confusion_matrix_people_read():
    gold, pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    report = class_report(gold, pred, labels_num=4)  # class 3 is neither gold nor predicted: no row
    assert list(report["per_class"]) == ["0", "1", "2"]
    assert report["per_class"]["0"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report["per_class"]["2"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    table = report_table(report).splitlines()
    assert table[2] == "| 0 | 1.0000 | 0.6667 | 0.8000 | 3 |"
    assert "| 1 | 0 | 1 | 1 | 0 |" in table  # gold 1: once right, once taken for 2
