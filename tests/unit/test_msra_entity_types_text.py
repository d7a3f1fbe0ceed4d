"""datasets/msra_entity_types_text: the derivation writes a sentence's entity types as text in one fixed order and
the shipped files are what it writes; the preset and the transformers side share one recipe, and both sides score
the types read back from a generation with one function."""

from __future__ import annotations

import json

import pytest

from experiments_testing import assert_text2text_preset_shares, load_script
from uer.tasks.metrics import multilabel_metrics
from uer_testing import ROOT


@pytest.fixture(scope="module")
def make():
    return load_script("text2text", "make_msra_entity_types_text")


@pytest.fixture(scope="module")
def common():
    return load_script("text2text", "common")


def test_the_types_are_distinct_in_a_fixed_order(make):
    found = make.sentences.entities(list("王小明在北京大学见到李华"),
                                    ["B-PER", "I-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O",
                                     "B-PER", "I-PER"])
    assert make.target_of(found) == "人名；机构"
    assert make.target_of([("ORG", "中国队"), ("LOC", "上海"), ("PER", "李华")]) == "人名；地名；机构"
    assert make.target_of([]) == "无"


def test_the_shipped_files_are_the_derivation(make):
    assert make.main(["--check"]) == 0


def test_a_changed_file_fails_the_check(make, tmp_path, capsys):
    assert make.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "dev.tsv").write_text("source\ttarget\n", encoding="utf-8")
    assert make.main(["--check", "--out", str(tmp_path)]) == 1
    assert "dev.tsv" in capsys.readouterr().err


def test_the_shipped_files_are_the_multilabel_sets_as_text():
    """The same sentences as datasets/msra_entity_types, the target its label ids written as type names."""
    names = {"0": "人名", "1": "地名", "2": "机构"}
    for split in ("train", "dev", "test"):
        labelled = (ROOT / "datasets" / "msra_entity_types" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        text = (ROOT / "datasets" / "msra_entity_types_text" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert len(text) == len(labelled) and text[0] == "source\ttarget"
        for (label, sentence), row in zip((row.split("\t") for row in labelled[1:]), text[1:]):
            assert row == f"{sentence}\t{'；'.join(names[i] for i in label.split(',')) if label else '无'}"


def test_the_counts_add_up_to_the_files(make):
    last = make.counts().splitlines()[-1]
    rows = [len((ROOT / "datasets" / "msra_entity_types_text" / f"{split}.tsv").read_text(encoding="utf-8")
                .splitlines()) - 1 for split in ("train", "dev", "test")]
    assert last == f"| all | {' | '.join(f'{n:,}' for n in rows)} |"


def test_the_preset_and_the_transformers_side_share_the_recipe(common):
    assert_text2text_preset_shares(common, common.TYPES)
    assert common.TYPES.best_metric == "exact_match" and common.TYPES.scores_types


def test_types_are_read_back_from_a_generation(common):
    assert common.types_in("人名；机构") == {"人名", "机构"}
    assert common.types_in("无") == set() and common.types_in("") == set()
    assert common.types_in("地名；地名；[UNK]；人") == {"地名"}  # repeats and anything else add nothing


def test_type_scores_are_the_multilabel_scores_of_the_sets(common):
    generated = ["人名；机构", "无", "地名；人名", "机构"]
    references = ["人名", "无", "地名", "人名；地名；机构"]
    gold = [[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 1]]
    pred = [[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]
    found = common.type_scores(generated, references)
    assert found == multilabel_metrics(gold, pred)
    assert found["micro_f1"] == pytest.approx(3 / 5)  # three right of five written, of five gold
    assert found["acc"] == 0.25


def test_types_score_text_and_sets_and_entities_text_only(common):
    found = common.scores(["地名", "无"], ["地名", "人名"], common.TYPES)
    assert found["exact_match"] == 0.5 and found["micro_f1"] == pytest.approx(2 * 1 / (1 + 2))
    assert set(common.scores(["地名"], ["地名"], common.ENTITIES)) == set(common.METRICS)


def test_each_task_has_its_own_results_files(common):
    assert common.task_of("", []) is common.ENTITIES and common.task_of("", ["--task", "types"]) is common.TYPES
    assert common.ENTITIES.results("uer").name == "results_uer.json"
    assert {common.TYPES.results(side).name for side in ("uer", "hf")} == {"results_types_uer.json",
                                                                          "results_types_hf.json"}


def test_the_summary_keeps_the_type_scores_only_where_every_seed_has_them(common):
    text = {name: 0.5 for name in common.METRICS}
    runs = [{"dev": {**text, "micro_f1": 0.25, "macro_f1": 0.2, "acc": 0.5}, "test_greedy": text},
            {"dev": {**text, "micro_f1": 0.75, "macro_f1": 0.4, "acc": 0.5}, "test_greedy": text}]
    found = common.summary_of(common.TYPES)(runs)
    assert found["dev"]["micro_f1"]["mean"] == 0.5 and found["dev"]["micro_f1"]["n"] == 2
    assert "micro_f1" not in found["test_greedy"] and f"test_beam{common.BEAMS}" not in found


def test_the_baseline_writes_none_everywhere(common):
    assert common.always_none(common.TYPES, "test") == "EM 48.80, type micro-F1 0.00, type macro-F1 0.00"


def test_uer_side_adds_the_type_scores_of_the_best_models_generations(common, tmp_path):
    """uer_text2text.py: dev of the best epoch and test from results.jsonl, type scores from the generations that
    stage=infer wrote (here already there, so nothing runs)."""
    uer = load_script("text2text", "uer_text2text")
    data, run_dir = tmp_path / "data", tmp_path / "seed1"
    data.mkdir()
    run_dir.mkdir()
    for split, targets in (("dev", ["地名", "无"]), ("test", ["人名；机构", "无"])):
        rows = "".join(f"句{i}\t{target}\n" for i, target in enumerate(targets))
        (data / f"{split}.tsv").write_text("source\ttarget\n" + rows, encoding="utf-8")
    (run_dir / "dev_generations.tsv").write_text("source\tgeneration\n句0\t地名\n句1\t无\n", encoding="utf-8")
    (run_dir / "test_generations.tsv").write_text("source\tgeneration\n句0\t人名\n句1\t地名\n", encoding="utf-8")
    text = {name: 0.5 for name in common.METRICS}
    records = [{"split": "dev", "epoch": 1, **dict(text, exact_match=0.0)}, {"split": "dev", "epoch": 2, **text},
               {"split": "test", **text}]
    (run_dir / "results.jsonl").write_text("".join(f"{json.dumps(r)}\n" for r in records), encoding="utf-8")
    entry = uer.scores(run_dir, 1, common.TYPES._replace(data=data), threads=1)
    assert entry["best_epoch"] == 2 and [e["epoch"] for e in entry["dev_by_epoch"]] == [1, 2]
    assert entry["dev"] == {**text, "micro_f1": 1.0, "macro_f1": 1.0, "acc": 1.0}
    assert entry["test_greedy"]["micro_f1"] == pytest.approx(2 * 1 / (2 + 2)) and entry["test_greedy"]["acc"] == 0.0
    assert uer.scores(tmp_path, 1, common.TYPES, threads=1) is None  # no results.jsonl yet: the seed runs
