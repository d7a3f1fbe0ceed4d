"""End to end: a whole-word-masked dataset built in two processes pre-trains; a missing segmenter stops
the stage with one line before anything is written."""

import json
import sys

import pytest

from uer.app import run_stage
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, run_main

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_corpus(tmp_path):
    lines = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()[:300]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_whole_word_dataset_pretrains(tmp_path, small_corpus):
    data, model = tmp_path / "data", tmp_path / "model"
    pre = run_main(["stage=preprocess", "target=mlm", f"preprocess.corpus_path={small_corpus}",
                    f"preprocess.dataset_path={data}", "preprocess.seq_length=64", "preprocess.processes_num=2",
                    "preprocess.whole_word_masking=true", "preprocess.dynamic_masking=true"], tmp_path / "run_pre")
    assert pre.returncode == 0, pre.stderr
    meta = json.loads((data / "meta.json").read_text())
    assert meta["masking"]["whole_word_masking"] and meta["word_segmentation"]["segmenter"] == "jieba"
    # The dataset came from main.py (two processes segmenting with jieba); its pre-training runs in-process.
    run_stage(compose_config(["stage=pretrain", "target=mlm", "size=tiny", *SMALL, "hardware.num_threads=1",
                              f"pretrain.dataset_path={data}", "pretrain.total_steps=10", "pretrain.batch_size=8",
                              "pretrain.report_steps=5", f"output_model_path={model}"]))
    reports = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in reports] == [5, 10] and all(r["mlm_loss"] > 0 for r in reports)
    assert (model / "step_10.pt").is_file()


def test_missing_jieba_stops_the_stage_in_one_line(tmp_path, small_corpus, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba now raises ImportError
    data = tmp_path / "data"
    cfg = compose_config(["stage=preprocess", f"preprocess.corpus_path={small_corpus}",
                          f"preprocess.dataset_path={data}", "preprocess.whole_word_masking=true"])
    expect_user_error(capsys, cfg, "preprocess.word_segmenter=jieba", 'pip install -e ".[wwm]"')
    assert not data.exists()
