"""datasets/msra_entity_types: the derivation turns a sentence's entities into the set of their types and the
shipped files are what it writes; the uer preset and the transformers script share one recipe and one scorer."""

from __future__ import annotations

import pytest
import torch

from experiments_testing import load_script, preset_of_the_recipe
from uer.tasks.metrics import multilabel_metrics
from uer_testing import ROOT


@pytest.fixture(scope="module")
def make():
    return load_script("multilabel", "make_msra_entity_types")


@pytest.fixture(scope="module")
def common():
    return load_script("multilabel", "common")


def test_a_sentence_gives_the_ascending_distinct_ids_of_its_types(make):
    found = make.sentences.entities(list("王小明在北京大学见到李华"),
                                    ["B-PER", "I-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O",
                                     "B-PER", "I-PER"])
    assert make.label_of(found) == "0,2"
    assert make.label_of([("ORG", "中国队"), ("LOC", "上海")]) == "1,2"
    assert make.label_of([]) == ""  # the empty set: task=multilabel reads an empty field so
    assert make.tsv([("", "你好"), ("1", "上海")]) == "label\ttext_a\n\t你好\n1\t上海\n"


def test_the_shipped_files_are_the_derivation(make):
    assert make.main(["--check"]) == 0


def test_the_shipped_files_are_the_entities_data_with_type_sets():
    """The same sentences as datasets/msra_entities, the label the set of the types its target names."""
    types = {"人名": "0", "地名": "1", "机构": "2"}
    for split in ("train", "dev", "test"):
        entities = (ROOT / "datasets" / "msra_entities" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        labelled = (ROOT / "datasets" / "msra_entity_types" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert len(entities) == len(labelled) and labelled[0] == "label\ttext_a"
        for (source, target), (label, text) in zip((row.split("\t") for row in entities[1:]),
                                                   (row.split("\t") for row in labelled[1:])):
            named = {types[pair.split("：", 1)[0]] for pair in target.split("；")} if target != "无" else set()
            assert (text, label) == (source, ",".join(sorted(named)))


def test_the_preset_and_the_transformers_side_share_the_recipe(common):
    preset = preset_of_the_recipe(common)
    assert (preset["task"]["threshold"], preset["task"]["labels"]) == (common.RECIPE["threshold"], [0, 1, 2])
    assert common.DATA == ROOT / "datasets" / "msra_entity_types"


def test_the_transformers_side_reads_and_scores_as_uer(tmp_path):
    hf = load_script("multilabel", "hf_multilabel")
    path = tmp_path / "rows.tsv"
    path.write_text("label\ttext_a\n0,2\t甲乙\n\t丙\n1\t丁\n", encoding="utf-8")
    rows = hf.read_tsv(path)
    assert [labels for labels, _ in rows] == [[0, 2], [], [1]]
    gold = [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    logits = torch.tensor([[2.0, -1.0, 0.0], [-3.0, -3.0, -3.0], [-1.0, -0.1, 0.5]])  # 0.0: probability 0.5, kept
    expected = multilabel_metrics(torch.tensor(gold).bool().numpy(), (torch.sigmoid(logits) >= 0.5).numpy())
    assert hf.scored(logits, gold) == expected
    assert expected["micro_f1"] == pytest.approx(2 * 2 / (3 + 3))  # two right of three predicted, three gold
