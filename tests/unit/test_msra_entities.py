"""datasets/msra_entities: the derivation script turns BIO-tagged sentences into entity strings, and
the shipped files are what it writes; the uer preset and the transformers script share one recipe."""

from __future__ import annotations

import pytest

from experiments_testing import assert_text2text_preset_shares, load_script


@pytest.fixture(scope="module")
def make():
    return load_script("text2text", "make_msra_entities")


def test_entities_in_order_with_chinese_types(make):
    chars = list("王小明在北京大学见到李华")
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "B-PER", "I-PER"]
    assert make.target_of(make.sentences.entities(chars, tags)) == "人名：王小明；机构：北京大学；人名：李华"
    assert make.target_of(make.sentences.entities(list("天气好"), ["O", "O", "O"])) == "无"


def test_adjacent_entities_stay_apart(make):
    assert make.sentences.entities(list("中美"), ["B-LOC", "B-LOC"]) == [("LOC", "中"), ("LOC", "美")]


@pytest.mark.parametrize("tags", [["I-PER", "O"], ["B-LOC", "I-PER"], ["O", "X"]])
def test_a_broken_tag_sequence_is_refused(make, tags):
    with pytest.raises(ValueError):
        make.sentences.entities(list("甲乙"), tags)


def test_splits_of_tiny_inputs(make, tmp_path, monkeypatch):
    def ner(name, rows):
        path = tmp_path / name
        path.write_text("text_a\tlabel\n" + "".join(f"{' '.join(t)}\t{' '.join(g)}\n" for t, g in rows),
                        encoding="utf-8")
        return path

    monkeypatch.setattr(make.sentences, "MAX_CHARS", 3)
    monkeypatch.setattr(make.sentences, "DEV_ROWS", 1)
    monkeypatch.setattr(make.sentences, "TEST_ROWS", 1)
    train = ner("train.tsv", [("张三", ["B-PER", "I-PER"]), ("太长的句子", ["O"] * 5)])
    dev = ner("dev.tsv", [("上海", ["B-LOC", "I-LOC"]), ("好", ["O"]), ("中国队", ["B-ORG", "I-ORG", "I-ORG"])])
    test = ner("test.tsv", [("你", ["O"]), ("我", ["O"])])
    found = {name: [(source, make.target_of(entities)) for source, entities in rows]
             for name, rows in make.sentences.splits(train, dev, test).items()}
    assert found == {
        "train": [("张三", "人名：张三"), ("好", "无"), ("中国队", "机构：中国队")],
        "dev": [("上海", "地名：上海")],
        "test": [("你", "无")],
    }
    assert make.tsv([("你", "无")]) == "source\ttarget\n你\t无\n"


def test_the_shipped_files_are_the_derivation(make):
    assert make.main(["--check"]) == 0


def test_the_preset_and_the_transformers_side_share_the_recipe():
    common = load_script("text2text", "common")
    assert_text2text_preset_shares(common, common.ENTITIES)


def test_runs_of_another_recipe_are_neither_merged_nor_shown(tmp_path):
    """A results file measured with an older recipe: a new run starts it afresh, and the table says so."""
    common = load_script("text2text", "common")
    scores = {name: 0.5 for name in common.METRICS}
    run = {"seed": 1, "best_epoch": 1, "dev": scores, "test_greedy": scores}
    path = tmp_path / "results.json"
    recipe = common.ENTITIES.recipe
    old = dict(recipe, epochs_num=recipe["epochs_num"] + 1)
    common.store(path, {"recipe": old}, {1: run})
    assert common.load_runs(path, common.ENTITIES._replace(recipe=old)) == {1: run}
    assert common.load_runs(path) == {}
    assert common.cell(path, "dev") == \
        f"not run with this recipe yet (`results.json` holds epochs_num {old['epochs_num']})"
    common.store(path, {"recipe": recipe}, {2: dict(run, seed=2)})
    assert sorted(common.load_runs(path)) == [2]
    assert common.cell(path, "dev") == "EM 50.00 ± 0.00, ROUGE-L 50.00 ± 0.00, BLEU 0.50 ± 0.00 (n=1)"
