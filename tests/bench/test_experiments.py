"""conf/experiment/: every reproduction preset composes, points at the bundled data, carries the published
numbers its header states as data, and the smoke commands its header documents (random weights, the
test_data-size files) run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from uer.io.checkpoint import step_checkpoints
from uer.app import run_stage
from uer.reference_results import check_published
from uer.tasks import get_task
from uer_testing import ROOT, compose_config, expect_user_error

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# Files a preset names that are not bundled, each documented in its preset (the full splits
# the original used, or what an earlier step writes).
NOT_BUNDLED = {
    "datasets/c3/train.json",
    "datasets/nlpcc-dbqa/train.tsv", "datasets/nlpcc-dbqa/dev.tsv", "datasets/nlpcc-dbqa/test.tsv",
    "outputs/distill/text_label_logits.tsv",
}


def header(name: str) -> str:
    return (ROOT / "conf" / "experiment" / f"{name}.yaml").read_text(encoding="utf-8")


def preprocess_command(name: str) -> dict[str, str]:
    """``{key: value}`` of the stage=preprocess command a pre-training preset's header shows."""
    lines = header(name).split("python main.py stage=preprocess", 1)[1].split("python main.py", 1)[0]
    words = " ".join(line.lstrip("#").strip().rstrip("\\") for line in lines.splitlines()).split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def read_paths(cfg, name: str) -> list[str]:
    """The data files a preset reads in its stages."""
    if cfg.stage == "pretrain":
        return [preprocess_command(name)["preprocess.corpus_path"]]
    paths = [cfg.finetune.train_path, cfg.finetune.dev_path, cfg.finetune.test_path, cfg.task.get("label2id_path")]
    for folder in cfg.task.get("dataset_paths", []):
        paths += [f"{folder}/train.tsv", f"{folder}/dev.tsv"]
    return [p for p in paths if p]


def test_every_preset_is_here():
    """One preset per documented command of the original toolkit (see the issue's list)."""
    expected = {"bert_book_review_pretrain", "bert_book_review", "mlm_book_review_pretrain", "mlm_book_review",
                "lstm_douban", "lstm_lm_pretrain", "lstm_douban_pretrained", "elmo_chnsenticorp_pretrain",
                "elmo_chnsenticorp", "gatedcnn_chnsenticorp", "albert_pretrain", "albert_douban", "roberta_pretrain",
                "spanbert_pretrain", "gpt_pretrain", "smp2020_ewect_cv", "msra_ner", "cmrc2018", "c3", "dbqa",
                "distill_teacher", "distill_student", "multi_task"}
    assert expected <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preset_composes_and_reads_bundled_data(name):
    cfg = compose_config([f"experiment={name}"])
    assert cfg.stage in ("pretrain", "finetune")
    assert cfg.output_model_path is None  # the run owns its outputs
    missing = [p for p in read_paths(cfg, name) if not (ROOT / p).exists() and p not in NOT_BUNDLED]
    assert not missing, missing
    text = header(name)
    assert text.startswith("# @package _global_\n")
    assert re.search(rf"python main.py experiment={name}\b", text) and "Smoke" in text
    if cfg.stage == "finetune":
        assert re.search(r"^# Published: ", text, re.M), "a fine-tuning preset states the original's number"
        assert "pretrained_model_path" in text
    else:  # it pre-trains on what its header's preprocess command writes
        assert cfg.pretrain.dataset_path == preprocess_command(name)["preprocess.dataset_path"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_published_numbers_of_a_header_are_data(name):
    cfg = compose_config([f"experiment={name}"])
    if cfg.stage != "finetune":
        assert "published" not in cfg  # pre-training presets point at their fine-tuning step's number
        return
    paragraph = header(name).split("# Published:", 1)[1].split("\n#\n", 1)[0]
    if "no number" in paragraph:
        assert cfg.published == []
        return
    assert cfg.published, f"{name}: its header states a published number; add it under published:"
    for entry in cfg.published:
        assert f"{entry.value * 100:.1f}" in paragraph, (name, entry.value)
        assert entry.source.startswith("UER-py README (4e7597d)")
    check_published(cfg.published, get_task(cfg.task.type).metrics, cfg.task.type)


@pytest.mark.parametrize("entry, message", [
    ("{metric: bleu, value: 0.3, source: x}", "published[0].metric=bleu is not reported by task classifier; "
                                              "choose one of: acc, macro_f1"),
    ("{metric: acc, value: 0.3, source: x, split: train}", "published[0].split=train is not a split we score"),
    ("{metric: acc, value: 0.3, source: x, split: cv}", "published[0].split=cv compares with the mean over folds"),
])
def test_a_published_entry_that_cannot_be_compared_stops_the_run(entry, message, capsys):
    cfg = compose_config(["task=classifier", f"published=[{entry}]"])
    expect_user_error(capsys, cfg, message)


def test_fine_tuning_starts_from_the_last_checkpoint_of_its_pretraining_preset():
    # Composed here, not in a parametrize list: that would compose every preset at collection, in every worker.
    starting = {name: cfg for name, cfg in ((n, compose_config([f"experiment={n}"])) for n in EXPERIMENTS)
                if str(cfg.pretrained_model_path or "").startswith("outputs/")}
    assert {"bert_book_review", "elmo_chnsenticorp", "lstm_douban_pretrained", "mlm_book_review"} <= set(starting)
    for name, cfg in starting.items():
        match = re.fullmatch(r"outputs/models/(\w+)/step_(\d+)\.pt", cfg.pretrained_model_path)
        assert match, (name, cfg.pretrained_model_path)
        pretrain = compose_config([f"experiment={match.group(1)}"])
        assert pretrain.stage == "pretrain", name
        assert f"python main.py experiment={match.group(1)} output_model_path=outputs/models/{match.group(1)}" \
            in header(match.group(1))
        assert pretrain.pretrain.total_steps == int(match.group(2)), name
        for node in ("encoder", "embedding", "model"):  # the same architecture on both sides
            assert OmegaConf.to_container(pretrain[node], resolve=True) == \
                OmegaConf.to_container(cfg[node], resolve=True), (name, node)


# ----------------------------------------------------------------------------- smoke runs

def smoke_commands(name: str) -> list[list[str]]:
    """The ``python main.py`` commands of a preset's "Smoke" block, each as its words after ``main.py``."""
    lines = header(name).split("\n# Smoke", 1)[1].split("\n")[1:]
    commands, current = [], None
    for line in lines:
        if not line.startswith("#   "):
            break
        text = line[1:].strip()
        if text.startswith("python main.py"):
            current = []
            commands.append(current)
            text = text[len("python main.py"):]
        current += text.rstrip("\\").split()
    return commands


def redirected(words: list[str], tmp) -> list[str]:
    """The command with what it writes under outputs/ written under ``tmp`` instead (nothing else changes);
    a training run without output_model_path gets ``tmp/model`` (main.py would use its run directory)."""
    out = [word.replace("=outputs/", f"={tmp}/outputs/") for word in words]
    keys = {word.split("=", 1)[0] for word in out}
    if "stage=preprocess" not in out and "stage=infer" not in out and "output_model_path" not in keys:
        out.append(f"output_model_path={tmp / 'model'}")
    return out


def test_every_preset_has_smoke_commands_on_bundled_test_size_files():
    for name in EXPERIMENTS:
        commands = smoke_commands(name)
        assert commands and f"experiment={name}" in commands[-1 if name != "distill_teacher" else 0], name
        for words in commands:
            for word in words:
                value = word.split("=", 1)[-1]
                if value.startswith(("datasets/", "corpora/")):
                    assert (ROOT / value).stat().st_size < 400_000, (name, value)  # test_data-size files
            if any(word.startswith("experiment=") for word in words):
                assert "size=smoke" in words, name
                assert any(w.startswith(("finetune.max_steps=", "pretrain.total_steps=")) for w in words), name


@pytest.mark.e2e
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_commands_of_the_header_run(name, tmp_path, monkeypatch):
    """Exactly the header's smoke lines, one after another from the repository root, with their outputs under
    tmp_path and one torch thread (two spinning threads crawl on a loaded 2-core machine)."""
    monkeypatch.chdir(ROOT)
    results = [run_stage(compose_config([*redirected(words, tmp_path),
                                         *(["hardware.num_threads=1"] if "stage=preprocess" not in words else [])]))
               for words in smoke_commands(name)]
    cfg = compose_config(redirected(smoke_commands(name)[-1], tmp_path))
    if cfg.stage == "pretrain":
        assert results[-1] > 0  # the training loss
        assert [step for step, _ in step_checkpoints(cfg.output_model_path)] == [10]
        return
    if name == "distill_teacher":  # step 2 of distillation: the teacher's labels and logits of every text
        header_row, *rows = (tmp_path / "outputs/distill/smoke_label_logits.tsv").read_text(encoding="utf-8").splitlines()
        assert header_row == "label\tlogits" and len(rows) == 200
        cfg, results = compose_config(redirected(smoke_commands(name)[0], tmp_path)), results[:1]
    assert (-1.0 if cfg.task.type == "regression" else 0.0) <= results[-1] <= 1.0  # a correlation may be negative
    model = Path(cfg.output_model_path)
    assert (model / ("folds.json" if cfg.task.type == "classifier_cv" else "best.pt")).exists()


def test_pretraining_helps_dry_run_uses_the_given_corpus(tmp_path):
    corpus = tmp_path / "reviews.txt"
    corpus.write_text("一本好书\n", encoding="utf-8")
    script = [sys.executable, str(ROOT / "experiments" / "pretraining_helps.py"), "--dry-run", "--out", str(tmp_path / "o")]
    shown = subprocess.run([*script, "--corpus", str(corpus)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"preprocess.corpus_path={corpus}" in shown.stdout

    missing = subprocess.run([*script, "--corpus", str(tmp_path / "missing.txt")], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2
    assert "missing.txt not found" in missing.stderr
    assert not (tmp_path / "o").exists()


def original_recipe(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "original_recipe.py"), *arguments],
                          capture_output=True, text=True, timeout=120)


def test_original_recipe_refuses_a_directory_that_is_not_the_original(tmp_path):
    shown = original_recipe("--original", str(tmp_path), "--out", str(tmp_path / "o"))
    assert shown.returncode == 2
    assert f"--original {tmp_path} has no run_classifier.py" in shown.stderr
    assert "Traceback" not in shown.stderr and not (tmp_path / "o").exists()


def test_original_recipe_tables_finished_runs_and_runs_only_the_others(tmp_path):
    original = tmp_path / "UER-py"
    for name in ("run_classifier.py", "models/google_zh_vocab.txt", "models/bert_tiny_config.json"):
        (original / name).parent.mkdir(parents=True, exist_ok=True)
        (original / name).write_text("", encoding="utf-8")
    out = tmp_path / "runs"
    (out / "ours_seed7").mkdir(parents=True)
    # The original's log: dev accuracy after the epoch, then the test set's.
    (out / "original_seed7.log").write_text(
        "Epoch id: 1, Training steps: 300, Avg loss: 0.445\nAcc. (Correct/Total): 0.8049 (8049/10000) \n"
        "Test set evaluation.\nAcc. (Correct/Total): 0.7989 (7989/10000) \n", encoding="utf-8")
    (out / "original_seed11.log").write_text("Acc. (Correct/Total): 0.8067 (8067/10000) \n"
                                             "Acc. (Correct/Total): 0.8004 (8004/10000) \n", encoding="utf-8")
    (out / "ours_seed7" / "results.jsonl").write_text(
        '{"split": "dev", "epoch": 1, "acc": 0.8022}\n{"split": "test", "epoch": 1, "acc": 0.7978}\n',
        encoding="utf-8")
    common = ["--original", str(original), "--out", str(out), "--seeds", "7", "11"]

    shown = original_recipe(*common, "--table-only")
    assert shown.returncode == 0, shown.stderr
    assert "| 7 | 80.49 / 79.89 | 80.22 / 79.78 |" in shown.stdout
    assert "| 11 | 80.67 / 80.04 | not run |" in shown.stdout
    assert "| mean ± sample std | 80.58 ± 0.13 / 79.97 ± 0.11 (n=2) | 80.22 / 79.78 (n=1) |" in shown.stdout

    planned = original_recipe(*common, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert [line for line in planned.stdout.splitlines() if line.startswith("## ")] == [
        f"## ours seed 11 (in {ROOT}, one thread, log {out / 'ours_seed11.log'})"]
    assert "seed=11 hardware.num_threads=1" in planned.stdout
