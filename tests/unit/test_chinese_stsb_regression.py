"""datasets/chinese_stsb's regression reproduction: the uer preset and the transformers script share one recipe,
the same ids and segments, the same tensors and one scorer; the lexical baseline is the stated overlap."""

from __future__ import annotations

import json

import pytest
import torch

from experiments_testing import load_script, preset_of_the_recipe
from uer.tasks import build_task_model, make_task
from uer.tasks.sentence_embedding import sts_correlations
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, compose_config


@pytest.fixture(scope="module")
def common():
    return load_script("regression", "common")


@pytest.fixture(scope="module")
def hf():
    return load_script("regression", "hf_regression")


@pytest.fixture(scope="module")
def preset_cfg(common):
    return compose_config([f"experiment={common.PRESET}"])


def test_the_preset_and_the_transformers_side_share_the_recipe(common):
    preset = preset_of_the_recipe(common)
    assert preset["task"]["pooling"] == "first" and common.DATA == ROOT / "datasets" / "chinese_stsb"


def test_the_transformers_side_feeds_the_ids_and_segments_uer_feeds(common, hf, preset_cfg):
    """uer's [CLS] a [SEP] b [SEP] with segments 1, 2 is the peer's with token types 0, 1, cut at the same place."""
    tokenizer = build_tokenizer(preset_cfg.tokenizer)
    long_b = "这是一个很长的句子。" * 20  # 200 characters: the pair is cut inside b
    rows = [("一个女人在切洋葱。", "一个女人在切豆腐。", 1.0), ("Two men play chess.", long_b, 4.0)]
    for seq_length in (common.RECIPE["seq_length"], 12):
        task = make_task(preset_cfg.task, tokenizer, seq_length)
        for (text_a, text_b, _), item in zip(rows, hf.encoded(rows, tokenizer, seq_length)):
            src, seg = task.encode(text_a, text_b)
            assert item["input_ids"] == src
            assert item["token_type_ids"] == [segment - 1 for segment in seg]
    assert [item["labels"] for item in hf.encoded(rows, tokenizer, 128)] == [1.0, 4.0]
    batch = hf.collate(hf.encoded(rows, tokenizer, 12))
    assert batch["labels"].dtype == torch.float32 and batch["attention_mask"].sum().item() == 12 + 12


def test_the_two_models_have_the_same_tensors(hf, preset_cfg):
    """uer's segment table has one row more (its padding segment 0), the rest is BertForSequenceClassification's."""
    from transformers import BertForSequenceClassification  # lazy: only this test builds the peer

    tokenizer = build_tokenizer(preset_cfg.tokenizer)
    task = make_task(preset_cfg.task, tokenizer, preset_cfg.finetune.seq_length)
    ours = build_task_model(task, preset_cfg, 1)
    peer = BertForSequenceClassification(hf.bert_classifier_config(len(tokenizer.vocab), hf.MODEL, 1, "regression"))
    ours_count = sum(tensor.numel() for tensor in ours.parameters())
    assert ours_count == peer.num_parameters() + preset_cfg.model.hidden_size
    assert peer.config.num_labels == 1 and peer.config.problem_type == "regression"


def test_the_transformers_side_scores_as_uer(hf):
    predictions, gold = [[1.0], [2.0], [3.0], [4.0]], [1.0, 3.0, 2.0, 4.0]
    found = hf.scored(predictions, gold)
    assert found == sts_correlations([1.0, 2.0, 3.0, 4.0], gold)
    assert found["spearman"] == pytest.approx(0.8)  # 1 - 6 * (1 + 1) / (4 * 15)
    assert found["pearson"] == pytest.approx(0.8)


def test_the_lexical_baseline_is_the_dice_of_the_characters(common):
    assert common.char_overlap("一个女人在切洋葱。", "一个女人在切豆腐。") == pytest.approx(2 * 7 / 18)
    assert common.char_overlap("啊啊", "啊") == pytest.approx(2 * 1 / 3)  # multisets: one 啊 shared
    assert common.char_overlap("甲", "乙") == 0.0


def test_the_pairs_are_read_and_a_bad_row_is_one_line(common, tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("text_a\ttext_b\tlabel\n甲\t乙\t3\n丙\t丁\t0.5\n", encoding="utf-8")
    assert common.read_pairs(path) == [("甲", "乙", 3.0), ("丙", "丁", 0.5)]
    assert common.read_pairs(path, limit=1) == [("甲", "乙", 3.0)]
    path.write_text("text_a\ttext_b\tlabel\n甲\t乙\tfive\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"pairs.tsv:2: expected text_a, text_b and a numeric label"):
        common.read_pairs(path)
    path.write_text("label\ttext_a\ttext_b\n3\t甲\t乙\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="expected text_a, text_b, label"):
        common.read_pairs(path)


def test_the_bundled_splits_read_whole(common):
    counts = {split: len(common.read_pairs(common.DATA / f"{split}.tsv")) for split in ("train", "dev", "test")}
    assert counts == {"train": 5231, "dev": 1458, "test": 1361}


def test_uer_side_takes_the_best_dev_epoch_and_its_test_scores(tmp_path):
    uer = load_script("regression", "uer_regression")
    records = [{"split": "dev", "epoch": 1, "spearman": 0.1, "pearson": 0.3},
               {"split": "dev", "epoch": 2, "spearman": 0.2, "pearson": 0.1}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert uer.scores(tmp_path, 7) is None  # test not scored yet: the seed is run again
    test = {"split": "test", "epoch": 2, "spearman": 0.25, "pearson": 0.24}
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in [*records, test]),
                                            encoding="utf-8")
    assert uer.scores(tmp_path, 7) == {
        "seed": 7, "best_epoch": 2, "dev": {"spearman": 0.2, "pearson": 0.1},
        "dev_by_epoch": [{"epoch": 1, "spearman": 0.1, "pearson": 0.3}, {"epoch": 2, "spearman": 0.2, "pearson": 0.1}],
        "test": {"spearman": 0.25, "pearson": 0.24}}
