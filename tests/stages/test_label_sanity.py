"""Label sets inferred from the data are reported, and refused before training when a stray row made them
(a label far above the others, a label on one row in thousands) unless declared (issue 26)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import pytest

from uer.tasks import make_task
from uer.tasks.classifier import suspect_label
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines, expect_user_error, run_main

DATA = ROOT / "datasets" / "test_data" / "book_review"
DOUBAN = ROOT / "datasets" / "douban_book_review" / "train.tsv"


def with_stray_row(tmp_path, source, rows: int, label: int, after: int) -> tuple:
    """``rows`` rows of ``source`` with one more row of ``label`` after row ``after``; the file, the stray's line."""
    header, *lines = source.read_text(encoding="utf-8").splitlines()[:rows + 1]
    lines.insert(after, f"{label}\t这一行的标签是错的")
    path = tmp_path / "train.tsv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path, after + 2  # 1-based, after the header


def finetune_args(train, out, *extra) -> list[str]:
    return ["task=classifier", "size=tiny", *SMALL, "hardware.num_threads=1", "finetune.seq_length=16",
            "finetune.batch_size=16", "finetune.epochs_num=1", f"finetune.train_path={train}",
            f"finetune.dev_path={DATA / 'dev.tsv'}", f"tokenizer.vocab_path={VOCAB}", f"output_model_path={out}",
            *extra]


def refused(proc, *fragments) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc)
    for fragment in fragments:
        assert fragment in line, line
    return line


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_label_far_above_the_others_is_refused_naming_its_row_and_declaring_it_is_accepted(tmp_path, capsys):
    train, line = with_stray_row(tmp_path, DATA / "train.tsv", 200, 1000, after=57)
    before = digest(train)
    out = tmp_path / "model"
    proc = run_main(finetune_args(train, out), tmp_path / "run")
    assert refused(proc, f"{train}:{line}: label 1000 is far above the other labels (0, 1): 998 of the ids 0..1000 "
                         "would be classes without a row, so the classes inferred from the data would be 1001; fix "
                         "the row, or declare the classes: task.labels=[0,1,1000] (or task.labels_num=1001)")
    assert digest(train) == before and not out.exists()
    # Declared as the only classes, the stray row is a bad row (named); declared with it, it is accepted.
    # (In-process: main.py's one line, exit status and no traceback are checked on the refusal above.)
    expect_user_error(capsys, compose_config(finetune_args(train, out, "task.labels=[0,1]")), f"{train}:{line}",
                      "label 1000 is not one of task.labels=[0, 1]")
    cfg = compose_config(finetune_args(train, out, "task.labels=[1000,0,1]"))
    task = make_task(cfg.task, build_tokenizer(cfg.tokenizer), 16)
    assert task.configured_labels_num == 1001
    data = task.read(train, split="train", labels_num=task.configured_labels_num, skip_bad_rows=False)
    assert Counter(example.label for example in data.examples)[1000] == 1


def test_a_label_on_one_row_in_thousands_is_refused(tmp_path, capsys):
    train, line = with_stray_row(tmp_path, DOUBAN, 1500, 2, after=700)
    # In-process: main.py's one line, exit status and no traceback for a refused label set are checked by
    # test_a_label_far_above_the_others_is_refused_naming_its_row_and_declaring_it_is_accepted.
    expect_user_error(capsys, compose_config(finetune_args(train, tmp_path / "model")),
                      f"{train}:{line}: label 2 is on 1 of 1501 rows, so the classes inferred from the data would be 3",
                      "task.labels=[0,1,2] (or task.labels_num=3)")
    assert not (tmp_path / "model").exists()
    # The same row declared by its number of classes: read as the third class.
    cfg = compose_config(finetune_args(train, tmp_path / "model", "task.labels_num=3"))
    task = make_task(cfg.task, build_tokenizer(cfg.tokenizer), 16)
    assert task.configured_labels_num == 3


def test_labels_inferred_from_the_data_are_reported_in_one_line(caplog):
    cfg = compose_config(finetune_args(DATA / "train.tsv", "unused"))
    task = make_task(cfg.task, build_tokenizer(cfg.tokenizer), 16)
    data = task.read(DATA / "train.tsv", split="train", labels_num=None, skip_bad_rows=False)
    counts = Counter(example.label for example in data.examples)
    with caplog.at_level(logging.INFO, logger="uer.finetune"):
        assert task.labels_num_from(data) == 2
    assert caplog.messages == [f"{DATA / 'train.tsv'}: labels found: 0 ({counts[0]} rows), 1 ({counts[1]} rows) "
                               "-> labels_num=2"]


@pytest.mark.parametrize("counts, suspect", [
    ({0: 500, 1: 500}, None),
    ({0: 5, 1: 5, 2: 5, 4: 5}, None),  # one class without rows among many: a class the file happens to lack
    ({0: 5, 3: 5}, None),  # as many absent ids as present ones: not yet "far"
    ({0: 5, 1: 5, 7: 5}, 7),
    ({0: 2000, 1: 2000, 2: 3}, 2),  # 3 of 4003 rows: fewer than one in a thousand
    ({0: 2000, 1: 2000, 2: 5}, None),
])
def test_which_inferred_label_looks_like_a_stray_row(counts, suspect):
    assert suspect_label(Counter(counts), max(counts) + 1)[0] == suspect


def test_declared_labels_are_checked():
    from uer.errors import UerError

    for bad in ("[0,0]", "[-1,1]", "[]"):
        cfg = compose_config(["task=classifier", f"task.labels={bad}"])
        with pytest.raises(UerError, match="must be distinct class ids"):
            make_task(cfg.task, build_tokenizer(cfg.tokenizer), 16)
    cfg = compose_config(["task=classifier", "task.labels=[0,5]", "task.labels_num=3"])
    with pytest.raises(UerError, match="holds 5, not below task.labels_num=3"):
        make_task(cfg.task, build_tokenizer(cfg.tokenizer), 16)
