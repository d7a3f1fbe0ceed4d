"""conf/experiment/: every reproduction preset composes, points at the bundled data, and its tiny smoke
variant (`experiment=NAME size=tiny`, random weights, slices of the data) runs a step of every stage it has."""

import json
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from uer.io.checkpoint import step_checkpoints
from uer.stages import run_stage
from uer_testing import ROOT, SMALL, compose_config

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# Files a preset names that are not bundled, each documented in its preset (the full splits
# the original used, or what an earlier step writes).
NOT_BUNDLED = {
    "datasets/c3/train.json",
    "datasets/nlpcc-dbqa/train.tsv", "datasets/nlpcc-dbqa/dev.tsv", "datasets/nlpcc-dbqa/test.tsv",
    "outputs/distill/text_label_logits.tsv",
}
ROWS = 8  # rows (questions for C3) of each data slice
BATCH = 4  # two steps of fine-tuning; CMRC's slice holds 4 questions


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


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS
                                  if str(compose_config([f"experiment={n}"]).pretrained_model_path or "")
                                  .startswith("outputs/")])
def test_fine_tuning_starts_from_the_last_checkpoint_of_its_pretraining_preset(name):
    cfg = compose_config([f"experiment={name}"])
    match = re.fullmatch(r"outputs/models/(\w+)/step_(\d+)\.pt", cfg.pretrained_model_path)
    assert match, cfg.pretrained_model_path
    pretrain = compose_config([f"experiment={match.group(1)}"])
    assert pretrain.stage == "pretrain"
    assert f"python main.py experiment={match.group(1)} output_model_path=outputs/models/{match.group(1)}" \
        in header(match.group(1))
    assert pretrain.pretrain.total_steps == int(match.group(2))
    for node in ("encoder", "embedding", "model"):  # the same architecture on both sides
        assert OmegaConf.to_container(pretrain[node], resolve=True) == OmegaConf.to_container(cfg[node], resolve=True)


# ----------------------------------------------------------------------------- smoke runs

def head_tsv(src, dst, rows=ROWS):
    lines = src.read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join(lines[:rows + 1]) + "\n", encoding="utf-8")
    return dst


def head_json(src, dst, rows=ROWS):
    data = json.loads(src.read_text(encoding="utf-8"))
    if isinstance(data, list):  # C3: a list of [dialogue, questions, id]
        data = data[:rows]
    else:  # CMRC: SQuAD-style, keep one paragraph's first questions
        article = data["data"][0]
        paragraph = dict(article["paragraphs"][0], qas=article["paragraphs"][0]["qas"][:4])
        data = {**data, "data": [dict(article, paragraphs=[paragraph])]}
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return dst


def synthetic(path, dst):
    """What a not-bundled file looks like, made from bundled text."""
    reviews = [line.split("\t")[1] for line in
               (ROOT / "datasets/test_data/book_review/train.tsv").read_text(encoding="utf-8").splitlines()[1:33]]
    if "nlpcc-dbqa" in path:  # questions with three candidates each, one of them the answer
        rows = ["qid\tlabel\ttext_a\ttext_b"]
        for q in range(4):
            for c in range(3):
                rows.append(f"q{q}\t{int(c == q % 3)}\t{reviews[q][:12]}\t{reviews[q * 3 + c + 4]}")
        dst.write_text("\n".join(rows) + "\n", encoding="utf-8")
    elif "text_label_logits" in path:  # the teacher's labels and logits next to each text
        rows = ["text_a\tlabel\tlogits"] + [f"{text}\t{i % 2}\t{1.5 - 3 * (i % 2)} {-1.5 + 3 * (i % 2)}"
                                           for i, text in enumerate(reviews[:ROWS])]
        dst.write_text("\n".join(rows) + "\n", encoding="utf-8")
    elif path.endswith("c3/train.json"):
        head_json(ROOT / "datasets/c3/dev.json", dst)
    else:
        raise AssertionError(f"no stand-in for {path}")
    return dst


def data_slice(path, tmp, tag, rows=ROWS):
    src = ROOT / path
    dst = tmp / f"{tag}_{src.name}"
    if path in NOT_BUNDLED:
        return synthetic(path, dst)
    return head_json(src, dst, rows) if src.suffix == ".json" else head_tsv(src, dst, rows)


def smoke_overrides(cfg, tmp) -> list[str]:
    out = ["size=tiny", *SMALL, "hardware.num_threads=1", "pretrained_model_path=null",
           f"output_model_path={tmp / 'model'}"]
    if cfg.stage == "pretrain":
        return out + [f"pretrain.dataset_path={tmp / 'data'}", "pretrain.total_steps=1",
                      "pretrain.save_checkpoint_steps=1", "pretrain.batch_size=4", "pretrain.report_steps=1"]
    f = cfg.finetune
    out += ["finetune.epochs_num=1", f"finetune.batch_size={BATCH}", "finetune.seq_length=64",
            "finetune.report_steps=1"]
    if cfg.task.type == "classifier_cv":  # 20 rows in 5 folds: each fold trains on 16, 4 steps of 4
        out += [f"finetune.train_path={data_slice(f.train_path, tmp, 'train', 20)}",
                f"task.train_features_path={tmp / 'features.npy'}"]
    elif cfg.task.type == "mt_classifier":
        folders = []
        for k, folder in enumerate(cfg.task.dataset_paths):
            (tmp / f"set{k}").mkdir()
            for split in ("train", "dev"):
                head_tsv(ROOT / folder / f"{split}.tsv", tmp / f"set{k}" / f"{split}.tsv")
            folders.append(str(tmp / f"set{k}"))
        out.append(f"task.dataset_paths=[{','.join(folders)}]")
    else:
        for key in ("train_path", "dev_path", "test_path"):
            if f[key]:
                out.append(f"finetune.{key}={data_slice(f[key], tmp, key.split('_')[0])}")
    if cfg.task.type == "cmrc":
        out.append("task.doc_stride=32")
    return out


@pytest.mark.e2e
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_tiny_smoke_variant_runs(name, tmp_path):
    cfg = compose_config([f"experiment={name}"])
    overrides = [f"experiment={name}", *smoke_overrides(cfg, tmp_path)]
    if cfg.stage == "pretrain":  # the header's preprocess command, on a slice of the corpus
        command = preprocess_command(name)
        lines = (ROOT / command["preprocess.corpus_path"]).read_text(encoding="utf-8").splitlines()[:60]
        (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        command.update({"preprocess.corpus_path": str(tmp_path / "corpus.txt"),
                        "preprocess.dataset_path": str(tmp_path / "data"), "preprocess.processes_num": "1",
                        "preprocess.seq_length": "32", "preprocess.dup_factor": "1"})
        run_stage(compose_config(["stage=preprocess", *(f"{key}={value}" for key, value in command.items())]))
        loss = run_stage(compose_config(overrides))
        assert loss > 0
        assert [step for step, _ in step_checkpoints(tmp_path / "model")] == [1]
        return
    score = run_stage(compose_config(overrides))
    assert 0.0 <= score <= 1.0
    produced = tmp_path / "model" / ("folds.json" if cfg.task.type == "classifier_cv" else "best.pt")
    assert produced.exists()
    if name == "distill_teacher":  # step 2 of distillation: the teacher's labels and logits
        texts = data_slice(cfg.finetune.train_path, tmp_path, "texts")
        run_stage(compose_config(["stage=infer", f"infer.load_model_path={produced}", f"infer.test_path={texts}",
                                  "infer.output_logits=true", f"infer.prediction_path={tmp_path / 'label_logits.tsv'}"]))
        header, *rows = (tmp_path / "label_logits.tsv").read_text(encoding="utf-8").splitlines()
        assert header == "label\tlogits" and len(rows) == ROWS


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
