"""Inputs are sacred: no output of a run is, resolves to or lies inside a file the run reads (refused before any
work, one line naming both), and a dataset rebuilt in its directory replaces only its own files."""

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from uer.app import inputs, outputs, run_stage
from uer.config.run import STAGE_NAMES
from uer.io.outputs import MANIFEST
from uer.stages import STAGES
from uer.tasks import TASKS, import_tasks
from uer.tools import tool_names
from uer_testing import (ROOT, SMALL, book_review_slices, compose_config, error_lines, expect_user_error,
                         run_main)

FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=8", "finetune.epochs_num=1",
        "size=tiny", *SMALL]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(directory: Path) -> dict:
    """Every file under ``directory`` with its hash: what a refused run must leave as it was."""
    return {str(p.relative_to(directory)): digest(p) for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """A tiny classifier fine-tuned on 48 rows: ``(model directory, test file)``."""
    tmp = tmp_path_factory.mktemp("clf")
    data = book_review_slices(tmp, train=48, dev=16, test=16)
    run_stage(compose_config(["task=classifier", f"finetune.train_path={data['train']}",
                              f"finetune.dev_path={data['dev']}", f"output_model_path={tmp / 'm'}", *FAST]))
    return tmp / "m", data["test"]


def infer_config(model: Path, test: Path, prediction):
    return compose_config(["stage=infer", "hardware.num_threads=1", f"infer.load_model_path={model}",
                           f"infer.test_path={test}", f"infer.prediction_path={prediction}"])


def refused(capsys, cfg, watched: Path, *fragments) -> str:
    """The one error line of ``cfg``'s run; nothing under ``watched`` changed or appeared."""
    before = tree(watched)
    line = expect_user_error(capsys, cfg, *fragments)
    assert "Traceback" not in line and "would destroy it" in line, line
    assert tree(watched) == before
    return line


# ---------------------------------------------------------------------------------- infer onto its inputs


def test_infer_onto_the_model_it_loads_is_refused(capsys, fine_tuned):
    model, test = fine_tuned
    best = model / "best.pt"
    refused(capsys, infer_config(best, test, best), model.parent, f"infer.prediction_path={best}",
            f"infer.load_model_path={best}")


def test_infer_onto_its_test_file_is_refused(capsys, fine_tuned):
    model, test = fine_tuned
    refused(capsys, infer_config(model, test, test), model.parent, f"infer.test_path={test}")


def test_infer_onto_a_dot_alias_of_its_test_file_is_refused(capsys, fine_tuned, monkeypatch):
    model, test = fine_tuned
    monkeypatch.chdir(test.parent)
    refused(capsys, infer_config(model, test, f"./{test.name}"), model.parent, f"is infer.test_path={test}")


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_infer_onto_a_link_to_its_test_file_is_refused(capsys, fine_tuned, tmp_path, link):
    model, test = fine_tuned
    alias = tmp_path / "alias.tsv"
    (os.symlink if link == "symlink" else os.link)(test, alias)
    refused(capsys, infer_config(model, test, alias), model.parent, str(alias), str(test))
    assert digest(alias) == digest(test)


def test_infer_into_the_model_directory_it_loads_is_refused(capsys, fine_tuned):
    model, test = fine_tuned
    line = refused(capsys, infer_config(model, test, model / "predictions.tsv"), model.parent, "lies inside")
    assert f"infer.load_model_path={model}" in line


@pytest.mark.e2e
def test_via_main_the_refusal_is_one_line_and_exit_2(fine_tuned, tmp_path):
    model, test = fine_tuned
    best = model / "best.pt"
    before = digest(best)
    proc = run_main(["stage=infer", f"infer.load_model_path={best}", f"infer.test_path={test}",
                     f"infer.prediction_path={best}"], tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(error_lines(proc)) == 1 and "would destroy it" in error_lines(proc)[0]
    assert digest(best) == before


def test_infer_elsewhere_still_writes(fine_tuned, tmp_path):
    model, test = fine_tuned
    run_stage(infer_config(model, test, tmp_path / "pred.tsv"))
    assert (tmp_path / "pred.tsv").read_text(encoding="utf-8").startswith("label\n")


# ---------------------------------------------------------------------------------- tools onto their inputs


@pytest.mark.parametrize("tool, key", [("check_model", "tool.input_path"), ("extract_embedding", "tool.input_path"),
                                       ("average_model", "tool.input_paths")])
def test_tool_writing_onto_its_model_is_refused(capsys, fine_tuned, tool, key):
    model, _ = fine_tuned
    best = model / "best.pt"
    given = f"[{best},{best}]" if key.endswith("_paths") else str(best)
    cfg = compose_config([f"tool={tool}", "hardware.num_threads=1", f"{key}={given}", f"tool.output_path={best}"])
    refused(capsys, cfg, model.parent, f"tool.output_path={best}", f"{key}={best}")


# ------------------------------------------------------------------- every stage and tool, every output x input

def stage_cases() -> list:
    """``(id, overrides)``: each stage (each task of finetune, each tool of stage=tool), its outputs set."""
    import_tasks()
    cases = [("preprocess", ["stage=preprocess"]), ("pretrain", ["stage=pretrain", "target=mlm"]),
             ("infer", ["stage=infer", "infer.prediction_path=out.tsv"]), ("score", ["stage=score"])]
    cases += [(f"finetune-{task}", [f"task={task}"]) for task in TASKS.names()]
    cases += [(f"tool-{tool}", [f"tool={tool}", "tool.output_path=out.bin"]) for tool in tool_names()]
    return cases


def test_the_cases_cover_every_stage():
    assert {name.split("-")[0] for name, _ in stage_cases()} == set(STAGE_NAMES)


def filled(cfg, directory: Path) -> list:
    """Point every input ``cfg`` declares at a file of its own (a list setting: a list of one); its inputs."""
    directory.mkdir()
    stage = STAGES[cfg.stage]
    for number, key in enumerate(stage.input_keys(cfg)):
        path = directory / f"input_{number}"
        path.write_bytes(f"{key}: {number}\n".encode("utf-8"))
        value = [str(path)] if OmegaConf.select(cfg, key) is not None and key.endswith("_paths") else str(path)
        OmegaConf.update(cfg, key, value, merge=False)
    return inputs(cfg)


@pytest.mark.parametrize("name, overrides", stage_cases(), ids=[name for name, _ in stage_cases()])
def test_every_output_onto_every_input_is_refused(capsys, tmp_path, name, overrides):
    cfg = compose_config(overrides)
    declared = filled(cfg, tmp_path / "inputs")
    written = outputs(cfg, run_directory=False)
    if name == "score":  # stage=score writes only into its run directory (results.jsonl)
        assert written == []
        return
    assert written and declared, (written, declared)
    for output in written:
        for source in declared:
            run = copy.deepcopy(cfg)
            OmegaConf.update(run, output.key, str(source.path), merge=False)
            refused(capsys, run, tmp_path, f"{output.key}={source.path}", f"{source.key}={source.path}")


# -------------------------------------------------------------------------------- datasets replaced in place


def preprocess(dataset: Path, *extra):
    return compose_config(["stage=preprocess", "target=mlm", f"preprocess.corpus_path={CORPUS}",
                           f"preprocess.dataset_path={dataset}", "preprocess.seq_length=32", *extra])


CORPUS = ROOT / "corpora" / "literature_mini.txt"


@pytest.fixture
def dataset_with_notes(tmp_path):
    dataset = tmp_path / "ds"
    run_stage(preprocess(dataset))
    (dataset / "notes.txt").write_text("mine, not the dataset's\n", encoding="utf-8")
    return dataset


def test_preprocess_into_an_existing_dataset_needs_overwrite(capsys, dataset_with_notes):
    before = tree(dataset_with_notes.parent)
    expect_user_error(capsys, preprocess(dataset_with_notes), "already holds a dataset", "preprocess.overwrite=true",
                      str(dataset_with_notes))
    assert tree(dataset_with_notes.parent) == before


def test_overwrite_replaces_only_the_dataset_files(dataset_with_notes):
    run_stage(preprocess(dataset_with_notes, "preprocess.overwrite=true", "target=lm"))
    assert (dataset_with_notes / "notes.txt").read_text(encoding="utf-8") == "mine, not the dataset's\n"
    meta = json.loads((dataset_with_notes / "meta.json").read_text(encoding="utf-8"))
    assert meta["target"] == "lm"
    written = set(json.loads((dataset_with_notes / MANIFEST).read_text(encoding="utf-8"))["files"])
    assert written == {p.name for p in dataset_with_notes.iterdir()} - {"notes.txt", MANIFEST}
    assert [p.name for p in dataset_with_notes.parent.iterdir()] == ["ds"], "no temporary or old directory is left"


def test_a_dataset_without_manifest_keeps_other_files(dataset_with_notes):
    """A dataset written before manifests: its files are the ones its meta.json names."""
    (dataset_with_notes / MANIFEST).unlink()
    run_stage(preprocess(dataset_with_notes, "preprocess.overwrite=true"))
    assert (dataset_with_notes / "notes.txt").is_file()
    assert json.loads((dataset_with_notes / "meta.json").read_text(encoding="utf-8"))["target"] == "mlm"
