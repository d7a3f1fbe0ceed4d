"""Seeing a run: TensorBoard scalars, report tables and HParams, progress lines with an ETA, and the summary
line a run ends with (with the published number it reproduces)."""

import copy
import io
import json
import logging
import re

import pytest

from uer.progress import Progress, eta_seconds, format_duration
from uer.app import run_stage
from uer.outcome import outcome, summary_line
from tensorboard_testing import event_accumulator, hparams_of
from uer_testing import ROOT, SMALL, compose_config, slice_file

DATA = ROOT / "datasets" / "test_data" / "book_review"
FAST = ["hardware.num_threads=1", "size=tiny", *SMALL]


def scalar_tags(log_dir):
    """``{tag: [(step, value), ...]}`` of the TensorBoard event files under ``log_dir``."""
    acc = event_accumulator(log_dir)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tb_finetune")
    train, dev = slice_file(DATA / "train.tsv", tmp / "train.tsv", 32), slice_file(DATA / "dev.tsv", tmp / "dev.tsv", 16)
    test = slice_file(DATA / "test.tsv", tmp / "test.tsv", 16)
    cfg = compose_config(["stage=finetune", f"finetune.train_path={train}", f"finetune.dev_path={dev}",
                          f"finetune.test_path={test}", "finetune.batch_size=16", "finetune.epochs_num=2",
                          "finetune.report_steps=1", "finetune.seq_length=32", f"output_model_path={tmp / 'model'}",
                          "published=[{metric: acc, value: 0.875, source: UER-py README}]", *FAST])
    return cfg, run_stage(cfg), tmp / "model"


def test_finetune_events_hold_training_numbers_and_dev_metrics(finetuned):
    _, _, out = finetuned
    tags = scalar_tags(out / "tensorboard")
    for tag in ("train/cls_loss", "train/cls_acc", "train/lr", "train/tokens_per_s", "train/real_tokens_per_s",
                "dev/acc", "dev/macro_f1"):
        assert tag in tags, sorted(tags)
    assert [step for step, _ in tags["train/cls_loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in tags["dev/acc"]] == [2, 4]  # after each of the two epochs
    assert all(0.0 <= value <= 1.0 for _, value in tags["dev/acc"])


def test_records_carry_the_per_label_report_and_the_logger_its_tables(finetuned):
    _, _, out = finetuned
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["split"] for r in records] == ["dev", "dev", "test"]
    for record in records:  # 16 dev rows, 16 test rows
        report = record["report"]
        assert set(report["per_class"]) <= {"0", "1"} and sum(map(sum, report["confusion"])) == 16
        assert record["acc"] == pytest.approx(sum(report["confusion"][c][c] for c in range(2)) / 16)
    texts = event_accumulator(out / "tensorboard").Tags()["tensors"]
    assert {"dev/report/text_summary", "test/report/text_summary"} <= set(texts)


def test_run_end_gives_tensorboard_the_test_scores_and_hparams(finetuned):
    cfg, score, out = finetuned
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    best = max((r for r in records if r["split"] == "dev"), key=lambda r: r["acc"])
    test = records[-1]
    tags = scalar_tags(out / "tensorboard")
    # The test scores of the best model, at the step that model was saved.
    assert tags["test/acc"] == [(best["step"], pytest.approx(test["acc"]))]
    assert tags["hparams/dev_acc"][0][1] == pytest.approx(score)
    assert tags["hparams/test_macro_f1"][0][1] == pytest.approx(test["macro_f1"])
    params, metrics = hparams_of(out / "tensorboard")
    assert params == {"seed": 7, "finetune.learning_rate": 2e-5, "finetune.batch_size": 16}
    assert set(metrics) == {"hparams/dev_acc", "hparams/dev_macro_f1", "hparams/test_acc", "hparams/test_macro_f1"}


def test_pretrain_events_hold_every_target_part(tmp_path):
    corpus = slice_file(ROOT / "corpora" / "book_review_bert.txt", tmp_path / "corpus.txt", 120)
    data = tmp_path / "data"
    run_stage(compose_config(["stage=preprocess", "target=bert", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={data}", "preprocess.seq_length=32"]))
    run_stage(compose_config(["stage=pretrain", "target=bert", f"pretrain.dataset_path={data}", "pretrain.total_steps=2",
                              "pretrain.batch_size=4", "pretrain.report_steps=1", f"output_model_path={tmp_path / 'm'}",
                              *FAST]))
    tags = scalar_tags(tmp_path / "m" / "tensorboard")
    for tag in ("train/mlm_loss", "train/mlm_acc", "train/nsp_loss", "train/nsp_acc", "train/lr",
                "train/tokens_per_s", "train/real_tokens_per_s"):
        assert tag in tags, sorted(tags)


def test_summary_line_names_metric_time_and_checkpoint(finetuned, caplog):
    cfg, score, out = finetuned
    facts = outcome(cfg, score, out)
    assert facts["metric"] == "dev acc" and facts["score"] == score and facts["dev"]["acc"] == score
    assert facts["checkpoint"] == str(out / "best.pt") and set(facts["test"]) == {"acc", "macro_f1"}
    line = summary_line("finetune", facts, 65.2)
    assert line.startswith("finetune done in 1m05s | best dev acc ")
    assert f"| test acc {facts['test']['acc']:.4f} macro_f1" in line and line.endswith("best.pt")
    # The number the run reproduces, ours beside it, and the difference.
    ours = facts["test"]["acc"]
    assert (f"| published test acc 0.8750 (UER-py README), ours {ours:.4f}, difference {ours - 0.875:+.4f} |"
            in line)
    # run_stage logs it as the run's last line, after the per-label tables of every evaluation (a run into
    # another directory: this one holds a finished run).
    again = copy.deepcopy(cfg)
    again.output_model_path = str(out.parent / "again")
    with caplog.at_level(logging.INFO, logger="uer"):
        run_stage(again)
    assert caplog.records[-1].getMessage().startswith("finetune done in ")
    tables = [r.getMessage() for r in caplog.records if "per class:" in r.getMessage()]
    assert [t.split(" per class:")[0] for t in tables] == ["epoch 1 dev", "epoch 2 dev", "test"]
    assert "| class | precision | recall | f1 | support |" in tables[-1] and "confusion matrix" in tables[-1]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_one_line_erased_before_log_records(monkeypatch):
    monkeypatch.setattr("uer.progress.REDRAW_SECONDS", 0.0)
    monkeypatch.delenv("TERM", raising=False)
    screen = FakeTerminal()
    handler = logging.StreamHandler(screen)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress(4, "predict dev.tsv", "batches", stream=screen) as bar:
            bar.update()
            assert re.search(r"\rpredict dev.tsv \[#####\.+\]  25% 1/4 batches \| .* batches/s \| .* eta ",
                             screen.getvalue())
            logging.getLogger("uer.test").warning("a log line")
            bar.update(3)
        text = screen.getvalue()
        # The bar was erased ("\r\x1b[K") right before the log line, which sits on a line of its own.
        assert "\r\x1b[Ka log line\n" in text
        assert text.endswith("\r\x1b[K")  # closing erases the bar
        assert handler.filters == []  # nothing left behind
    finally:
        root.removeHandler(handler)


def test_progress_elsewhere_is_a_plain_log_line_now_and_then(caplog):
    plain = io.StringIO()  # not a terminal
    with caplog.at_level(logging.INFO, logger="uer.progress"):
        with Progress(10, "preprocess", "units", stream=plain, interval=0.0) as bar:
            bar.update(4, postfix="1,000 instances")
    assert plain.getvalue() == ""
    assert re.fullmatch(r"preprocess  40% 4/10 units \| .* units/s \| 1,000 instances \| \d+s elapsed, eta \d+s",
                        caplog.records[-1].getMessage())
    with caplog.at_level(logging.INFO, logger="uer.progress"):
        Progress(10, "silent", stream=plain, interval=0.0, plain=False).update(5)  # training: its report lines
        Progress(10, "rank 1", stream=FakeTerminal(), enabled=False).update(5)  # not the main process
    assert all("silent" not in r.getMessage() and "rank 1" not in r.getMessage() for r in caplog.records)


def test_durations_and_eta():
    assert [format_duration(s) for s in (0.4, 7, 65, 3599, 3600, 7500)] == ["0s", "7s", "1m05s", "59m59s", "1h00m",
                                                                            "2h05m"]
    assert eta_seconds(25, 100, 10.0) == pytest.approx(30.0)
    assert eta_seconds(0, 100, 10.0) is None


def test_report_line_ends_with_an_eta(tmp_path, caplog):
    import torch

    from uer.training.report import Reporter

    reporter = Reporter(tmp_path, total_steps=4)
    with caplog.at_level(logging.INFO, logger="uer.train"):
        for step in (1, 2):
            reporter.add({"x_loss": (torch.tensor(1.0), torch.tensor(1.0))}, torch.ones(2, 3, dtype=torch.long))
            reporter.step_done(step)
        reporter.report(2, 1e-4)
    assert re.search(r"step 2/4 \| .* \| eta \d+s$", caplog.records[-1].getMessage())
    reporter.close()
