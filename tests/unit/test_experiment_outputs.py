"""The reproduction scripts never write over an input: a results file (``--out``) is checked before any seed runs
(a data set, a directory or another JSON is one line and exit 1, nothing run or written), a stored result replaces
the file whole, and the MSRA derivations refuse a folder whose files they did not write."""

from __future__ import annotations

import argparse
import json
import subprocess

import pytest

from experiments_testing import load_script


@pytest.fixture(scope="module")
def seed_results():
    return load_script("multilabel", "common").seed_results  # experiments/seed_results.py, as the scripts import it


@pytest.fixture(scope="module")
def hf_peer(seed_results):  # experiments/ is on the path once a common.py has loaded
    import hf_peer  # lazy: importable only after the fixture above put experiments/ on the path

    return hf_peer


@pytest.fixture(scope="module")
def sentences():
    return load_script("multilabel", "make_msra_entity_types").sentences


def exit_line(call) -> str:
    with pytest.raises(SystemExit) as stopped:
        call()
    assert isinstance(stopped.value.code, str) and "\n" not in stopped.value.code  # sys.exit(line): exit 1
    return stopped.value.code


@pytest.fixture
def inputs(tmp_path):
    data = tmp_path / "train.tsv"
    data.write_text("label\ttext_a\n1\t好\n", encoding="utf-8")
    other_json = tmp_path / "train.json"
    other_json.write_text(json.dumps({"data": [1, 2]}), encoding="utf-8")
    return {"data": data, "json": other_json, "directory": tmp_path}


@pytest.mark.parametrize("kind, said", [("data", "not a results file"), ("json", 'without a "runs" list'),
                                        ("directory", "is a directory")])
def test_a_uer_side_stops_before_any_seed_when_out_is_not_a_results_file(seed_results, inputs, kind, said,
                                                                         monkeypatch):
    before = {path: path.read_bytes() for path in inputs["directory"].iterdir()}
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a seed ran"))
    args = argparse.Namespace(threads=1, work=inputs["directory"] / "work", dry_run=False)
    line = exit_line(lambda: seed_results.run_preset("p", [1], args, lambda run_dir, seed: None,
                                                     lambda runs: pytest.fail("stored"), inputs[kind]))
    assert said in line and str(inputs[kind]) in line and "--out" in line
    assert {path: path.read_bytes() for path in inputs["directory"].iterdir()} == before


def test_a_transformers_side_stops_before_any_seed_too(hf_peer, inputs):
    args = argparse.Namespace(quick=False, seeds=[1], out=inputs["data"])
    line = exit_line(lambda: hf_peer.run_seeds(args, lambda seed: pytest.fail("a seed ran"), {"recipe": {}},
                                               lambda runs: {}, ()))
    assert "not a results file" in line
    assert inputs["data"].read_text(encoding="utf-8") == "label\ttext_a\n1\t好\n"


def test_a_new_file_or_a_results_file_is_accepted_and_a_missing_folder_is_one_line(seed_results, tmp_path):
    new = tmp_path / "results_uer.json"
    assert seed_results.check_results_file(new) == new
    seed_results.store(new, {"recipe": {"lr": 1}}, {1: {"seed": 1, "x": 2}}, lambda runs: {"n": len(runs)})
    assert seed_results.check_results_file(new) == new
    assert json.loads(new.read_text(encoding="utf-8"))["summary"] == {"n": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["results_uer.json"]  # no temporary file left beside it
    line = exit_line(lambda: seed_results.check_results_file(tmp_path / "missing" / "results.json"))
    assert "does not exist" in line


def test_a_derivation_never_writes_over_a_file_it_did_not_write(sentences, tmp_path):
    tables = lambda: {"train": ("source\ttarget\na\tb\n", 1), "dev": ("source\ttarget\nc\td\n", 1)}  # noqa: E731
    foreign = tmp_path / "dev.tsv"
    foreign.write_text("text_a\tlabel\n中 国\tB-LOC I-LOC\n", encoding="utf-8")
    line = exit_line(lambda: sentences.write_or_check(["--out", str(tmp_path)], "d", tmp_path, tables))
    assert str(foreign) in line and "not this derivation's output" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dev.tsv"]  # train.tsv not written either
    assert foreign.read_text(encoding="utf-8").startswith("text_a\tlabel")

    foreign.write_text("source\ttarget\nold\trow\n", encoding="utf-8")  # an earlier output: replaced
    assert sentences.write_or_check(["--out", str(tmp_path)], "d", tmp_path, tables) == 0
    assert foreign.read_text(encoding="utf-8") == "source\ttarget\nc\td\n"
    line = exit_line(lambda: sentences.write_or_check(["--out", str(foreign)], "d", tmp_path, tables))
    assert "is a file" in line
