"""Sentence embeddings, task=siamese and task=simcse (unsupervised and supervised): training a few
steps at size=smoke, inference from the checkpoint alone, tool=extract_feature giving the same
embeddings, the objectives and the correlation on hand-worked examples, bad input."""

import json
import math

import numpy as np
import pytest
import torch

from tool_testing import run_tool
from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.tasks import make_task
from uer.tasks.sentence_embedding import SiameseModel, SimcseModel, sts_correlations
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, compose_config, expect_user_error, synthetic_sts

FAST = ["size=smoke", "hardware.num_threads=1", "finetune.seq_length=24", "finetune.batch_size=8",
        "finetune.epochs_num=1", "finetune.report_steps=100"]
REVIEWS = ROOT / "datasets" / "test_data" / "book_review" / "train.tsv"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sts")
    reviews = [line.split("\t")[1][:30] for line in REVIEWS.read_text(encoding="utf-8").splitlines()[1:]]
    (tmp / "sentences.txt").write_text("".join(f"{text}\n" for text in reviews[:32]), encoding="utf-8")
    pairs = ["text_a\ttext_b\thard_negative"] + [f"{t}\t{t[:12]}\t{reviews[-1 - i]}" for i, t in enumerate(reviews[:32])]
    (tmp / "pairs.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    dev = synthetic_sts(tmp / "dev.tsv", 16, start=40)
    (tmp / "single.tsv").write_text("text_a\n" + "".join(f"{t}\n" for t in reviews[40:56]), encoding="utf-8")
    (tmp / "single.txt").write_text("".join(f"{t}\n" for t in reviews[40:56]), encoding="utf-8")
    return {"train": synthetic_sts(tmp / "train.tsv", 32), "dev": dev, "sentences": tmp / "sentences.txt",
            "pairs": tmp / "pairs.tsv", "single_tsv": tmp / "single.tsv", "single_txt": tmp / "single.txt"}


def finetune(task, train, dev, out, *extra):
    return run_stage(compose_config([f"task={task}", f"finetune.train_path={train}", f"finetune.dev_path={dev}",
                                     f"output_model_path={out}", *FAST, *extra]))


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    """One trained checkpoint per way of training (a few steps each)."""
    out = {}
    for name, task, train, extra in (("siamese", "siamese", data["train"], ()),
                                     ("unsupervised", "simcse", data["sentences"], ()),
                                     ("supervised", "simcse", data["pairs"], ("task.supervised=true",))):
        directory = tmp_path_factory.mktemp(name)
        out[name] = (directory, finetune(task, train, data["dev"], directory, *extra))
    return out


def infer(model, test_path, pred_path):
    # batches of finetune.batch_size, as dev evaluation: the same batches give the same cosines to the last bit
    # (a small random model's cosines nearly tie, so other padding could swap ranks)
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={model}", f"infer.test_path={test_path}",
                              f"infer.prediction_path={pred_path}", "infer.batch_size=8", "hardware.num_threads=1"]))
    lines = pred_path.read_text(encoding="utf-8").splitlines()
    return lines[0], [[float(x) for x in line.split()] for line in lines[1:]]


def gold(path):
    return [float(line.split("\t")[2]) for line in path.read_text(encoding="utf-8").splitlines()[1:]]


# ------------------------------------------------------------------------------ the metric and objectives

def test_correlations_match_hand_worked_examples():
    # ranks 1 3 2 4 against 1 2 3 4: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    pred, scores = [0.1, 0.4, 0.35, 0.8], [1, 2, 3, 4]
    result = sts_correlations(pred, scores)
    assert result["spearman"] == pytest.approx(0.8)
    # deviations from the means: pred -0.3125 -0.0125 -0.0625 0.3875, gold -1.5 -0.5 0.5 1.5
    assert result["pearson"] == pytest.approx(1.025 / math.sqrt(0.251875 * 5))
    # tied predictions share their mean rank 1.5: Pearson of (1.5, 1.5, 3) and (1, 2, 3) = 1.5 / sqrt(1.5 * 2)
    assert sts_correlations([0.2, 0.2, 0.9], [1, 2, 3])["spearman"] == pytest.approx(1.5 / math.sqrt(3))
    assert sts_correlations([0.5, 0.5, 0.5], [1, 2, 3]) == {"spearman": 0.0, "pearson": 0.0}


class FixedHidden(torch.nn.Module):
    """A stand-in backbone whose hidden state at every position is a given row vector."""

    def __init__(self, rows):
        super().__init__()
        self.rows = torch.tensor(rows, dtype=torch.float)

    def forward(self, src, seg):
        return self.rows[:, None, :].expand(-1, src.size(1), -1)


def batch_of(rows, pairs):
    return {"src": torch.ones(len(rows), 2, dtype=torch.long), "seg": torch.ones(len(rows), 2, dtype=torch.long),
            "label": torch.tensor([4.0, 1.0][:pairs])}


def test_siamese_loss_is_the_squared_error_of_the_cosine_against_score_over_max_score():
    # pair 1: cos((1,0), (1,1)) = 0.7071 vs 4/5; pair 2: cos((0,1), (1,0)) = 0 vs 1/5
    model = SiameseModel(FixedHidden([[1, 0], [0, 1], [1, 1], [1, 0]]), "first", 5.0)
    out = model(batch_of([0, 1, 2, 3], 2))
    expected = ((math.sqrt(0.5) - 0.8) ** 2 + 0.2 ** 2) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.stats["mse"][0].item() == pytest.approx(2 * expected, rel=1e-5)


def test_simcse_loss_is_cross_entropy_over_in_batch_cosines_with_hard_negatives():
    # anchors (1,0), (0,1); positives (1,0), (1,1); hard negatives (0,1), (-1,0); temperature 0.5
    model = SimcseModel(FixedHidden([[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [-1, 0]]), "first", 0.5)
    out = model(batch_of(range(6), 2))
    c = math.sqrt(0.5)
    rows = [([1, c, 0, -1], 0), ([0, c, 1, 0], 1)]  # cosines with every positive, then every hard negative
    expected = sum(-math.log(math.exp(s[i] / 0.5) / sum(math.exp(x / 0.5) for x in s)) for s, i in rows) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.stats["simcse_acc"][0].item() == 1  # the first anchor picks its positive, the second its negative


# ------------------------------------------------------------------------------ training and inference

@pytest.mark.parametrize("name", ["siamese", "unsupervised", "supervised"])
def test_training_keeps_the_best_dev_spearman_and_infer_reproduces_it(name, models, data, tmp_path):
    out, score = models[name]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records[0]["split"] == "dev" and records[0]["metric"] == "spearman" and records[0]["spearman"] == score
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["task"]["type"] == ("siamese" if name == "siamese" else "simcse")
    assert all(key.startswith("backbone.") for key in payload["model"])  # no head: the embedding is the model
    header, rows = infer(out / "best.pt", data["dev"], tmp_path / "scores.tsv")  # labels ignored
    assert header == "score" and len(rows) == 16
    assert sts_correlations([row[0] for row in rows], gold(data["dev"]))["spearman"] == pytest.approx(score, abs=1e-6)


def test_infer_writes_embeddings_whose_cosines_are_the_pair_scores(models, data, tmp_path):
    out, _ = models["unsupervised"]
    header, vectors = infer(out, data["single_tsv"], tmp_path / "emb.tsv")
    assert header == "embedding" and len(vectors) == 16 and {len(v) for v in vectors} == {32}
    pairs = tmp_path / "pairs.tsv"
    texts = data["single_tsv"].read_text(encoding="utf-8").splitlines()[1:]
    pairs.write_text("text_a\ttext_b\n" + "".join(f"{a}\t{b}\n" for a, b in zip(texts, texts[::-1])),
                     encoding="utf-8")
    _, scores = infer(out, pairs, tmp_path / "scores.tsv")
    v = torch.tensor(vectors)
    cosines = torch.nn.functional.cosine_similarity(v, v.flip(0), dim=-1)
    assert torch.allclose(torch.tensor(scores)[:, 0], cosines, atol=1e-5)


@pytest.mark.parametrize("name", ["siamese", "supervised"])
def test_extract_feature_gives_the_embeddings_infer_writes(name, models, data, tmp_path):
    out, _ = models[name]
    _, vectors = infer(out / "best.pt", data["single_tsv"], tmp_path / "emb.tsv")
    run_tool("extract_feature", f"tool.input_path={out / 'best.pt'}", f"tool.test_path={data['single_txt']}",
             f"tool.output_path={tmp_path / 'features.npy'}", "tool.seq_length=24", "tool.pooling=mean")
    features = np.load(tmp_path / "features.npy")
    assert np.allclose(features, np.array(vectors), atol=1e-5)


def test_unsupervised_training_file_may_be_a_tsv_with_a_text_a_column(data, tmp_path):
    cfg = compose_config(["task=simcse", *FAST])
    task = make_task(cfg.task, build_tokenizer(cfg.tokenizer), 24)
    plain = task.read(data["single_txt"], split="train", labels_num=None, skip_bad_rows=False)
    table = task.read(data["single_tsv"], split="train", labels_num=None, skip_bad_rows=False)
    assert [e.texts for e in plain.examples] == [e.texts for e in table.examples]
    assert all(e.texts[0] == e.texts[1] for e in plain.examples) and len(plain) == 16


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("case, fragments", [
    ("non_numeric_score", ["train_word.tsv:4", "label 'high' is not a number"]),
    ("dev_without_label", ["dev_nolabel.tsv:1", "no 'label' column"]),
    ("supervised_without_text_b", ["single.tsv:1", "no 'text_b' column"]),
    ("score_above_max", ["train_high.tsv:3", "task.max_score=5"]),
    ("constant_dev_scores", ["dev_flat.tsv", "every gold score is 3"]),
])
def test_bad_files_are_one_line_naming_the_file(case, fragments, data, tmp_path, capsys):
    dev_rows = data["dev"].read_text(encoding="utf-8").splitlines()
    (tmp_path / "dev_nolabel.tsv").write_text("\n".join(r.rsplit("\t", 1)[0] for r in dev_rows) + "\n",
                                              encoding="utf-8")
    (tmp_path / "dev_flat.tsv").write_text("\n".join([dev_rows[0]] + [r.rsplit("\t", 1)[0] + "\t3" for r in
                                                                       dev_rows[1:]]) + "\n", encoding="utf-8")
    train_rows = data["train"].read_text(encoding="utf-8").splitlines()
    for name, row, score in (("train_high.tsv", 2, "7"), ("train_word.tsv", 3, "high")):
        rows = list(train_rows)
        rows[row] = rows[row].rsplit("\t", 1)[0] + "\t" + score
        (tmp_path / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    task, train, dev, extra = {
        "non_numeric_score": ("siamese", tmp_path / "train_word.tsv", data["dev"], []),
        "dev_without_label": ("siamese", data["train"], tmp_path / "dev_nolabel.tsv", []),
        "supervised_without_text_b": ("simcse", data["single_tsv"], data["dev"], ["task.supervised=true"]),
        "score_above_max": ("siamese", tmp_path / "train_high.tsv", data["dev"], []),
        "constant_dev_scores": ("simcse", data["sentences"], tmp_path / "dev_flat.tsv", []),
    }[case]
    out = tmp_path / "model"
    cfg = compose_config([f"task={task}", f"finetune.train_path={train}", f"finetune.dev_path={dev}",
                          f"output_model_path={out}", *FAST, *extra])
    expect_user_error(capsys, cfg, *fragments)
    assert not out.exists()


def test_an_infer_file_without_text_a_is_one_line_and_writes_nothing(models, data, tmp_path, capsys):
    out, _ = models["siamese"]
    pred = tmp_path / "pred.tsv"
    cfg = compose_config(["stage=infer", f"infer.load_model_path={out}", f"infer.test_path={data['sentences']}",
                          f"infer.prediction_path={pred}", "hardware.num_threads=1"])
    expect_user_error(capsys, cfg, "sentences.txt:1", "no 'text_a' column")
    assert not pred.exists()
