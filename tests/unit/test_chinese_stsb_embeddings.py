"""Issue 25's sentence-embedding reproduction on datasets/chinese_stsb: the uer presets and the
sentence-transformers side (experiments/sentence_embeddings/) share one model, one recipe, the same ids and
one scorer, and the peer's losses are uer's objectives."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest
import torch
import yaml

from experiments_testing import assert_preset_follows, load_script
from uer.models.sentence import embed, pad_batch, sentence_ids
from uer.tasks.sentence_embedding import SiameseModel, SimcseModel, sts_correlations
from uer_testing import ROOT


# Each script as its command runs it (experiments_testing.load_script), once for the module.
SCRIPTS = {name: load_script("sentence_embeddings", name) for name in ("common", "st_side", "uer_side")}


@pytest.fixture
def common():
    return SCRIPTS["common"]


@pytest.fixture
def st_side():
    return SCRIPTS["st_side"]


@pytest.fixture(scope="module")
def tokenizer():
    return SCRIPTS["st_side"].project_tokenizer()


@pytest.mark.parametrize("task", ["siamese", "simcse"])
def test_the_presets_and_the_sentence_transformers_side_share_the_recipe(common, task):
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / f"{common.PRESETS[task]}.yaml").read_text(encoding="utf-8"))
    assert_preset_follows(preset, common.MODEL, common.RECIPES[task], common.BEST_METRIC)
    finetune, recipe = preset["finetune"], common.RECIPES[task]
    assert preset["defaults"][3] == {"override /task": task}
    assert preset["task"]["pooling"] == recipe["pooling"]
    extra = {"siamese": ("max_score", 5.0), "simcse": ("temperature", 0.05)}[task]
    assert preset["task"][extra[0]] == recipe[extra[0]] == extra[1]
    assert preset["task"].get("supervised", False) is False
    assert all(finetune[f"{split}_path"] == f"datasets/chinese_stsb/{split}.tsv" for split in ("train", "dev", "test"))


def test_the_peer_reads_the_sts_files_and_stops_at_a_bad_one(common, tmp_path):
    rows = common.read_pairs(common.DATA / "dev.tsv")
    assert len(rows) == 1458 and all(0 <= score <= 5 for _, _, score in rows)
    assert len(common.read_pairs(common.DATA / "train.tsv", limit=7)) == 7
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tscore\n甲\t乙\t1\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="header"):
        common.read_pairs(bad)
    bad.write_text("text_a\ttext_b\tlabel\n甲\t1\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.tsv:2: expected text_a, text_b and a numeric label"):
        common.read_pairs(bad)


def test_the_peer_sees_uers_ids(st_side, tokenizer):
    rows = [("一个女人在切洋葱。", "一个女人在切豆腐。", 1.0), ("A man plays.", "一个人", 5.0)]
    pairs = st_side.encoded(rows, tokenizer, "siamese", 128)
    assert [(a, b) for a, b, _ in pairs] == [(sentence_ids(tokenizer, a, 128), sentence_ids(tokenizer, b, 128))
                                             for a, b, _ in rows]
    assert [target for _, _, target in pairs] == [0.2, 1.0]  # score / 5: the cosine's target
    sentences = st_side.encoded(rows, tokenizer, "simcse", 128)  # text_a alone, twice: its two dropout views
    assert [(a, b) for a, b, _ in sentences] == [(pairs[0][0], pairs[0][0]), (pairs[1][0], pairs[1][0])]
    assert all(math.isnan(target) for _, _, target in sentences)
    batch = st_side.features([[101, 5, 102], [101, 102]])
    assert batch["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_the_peer_drops_the_last_partial_batch_as_uer(st_side):
    cut = st_side.batches(10, 3, random.Random(1))
    assert [len(batch) for batch in cut] == [3, 3, 3]
    assert len({index for batch in cut for index in batch}) == 9
    assert cut != [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # shuffled
    assert st_side.batches(10, 3, random.Random(1)) == cut


class Lookup(torch.nn.Module):
    """A backbone whose hidden states are a fixed table's rows: the embeddings depend on the ids alone."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(200, 8)

    def forward(self, src, seg):
        return self.table(src)


def uer_batch(texts: list[list[list[int]]], labels: list[float]) -> dict:
    src, seg = pad_batch([example[k] for k in range(len(texts[0])) for example in texts])
    return {"src": src, "seg": seg, "label": torch.tensor(labels)}


@pytest.mark.parametrize("task", ["siamese", "simcse"])
def test_the_peers_losses_are_uers_objectives(st_side, common, task):
    pytest.importorskip("sentence_transformers")
    torch.manual_seed(0)
    backbone = Lookup()
    pairs = [[[101, 7, 8, 102], [101, 7, 102]], [[101, 30, 102], [101, 31, 32, 33, 102]],
             [[101, 50, 51, 102], [101, 9, 102]]]
    scores = [4.0, 1.0, 2.5]
    batch = uer_batch(pairs, scores)
    if task == "siamese":
        ours = SiameseModel(backbone, "mean", common.RECIPES[task]["max_score"])(batch).loss
    else:
        ours = SimcseModel(backbone, "mean", common.RECIPES[task]["temperature"])(batch).loss
    u, v = embed(backbone, batch["src"], batch["seg"], "mean").view(2, len(pairs), -1)
    peer = st_side.loss_of(task, torch.nn.Identity()).compute_loss_from_embeddings(
        [u, v], torch.tensor(scores) / 5 if task == "siamese" else None)
    assert peer.item() == pytest.approx(ours.item(), rel=1e-5)


def test_the_peer_scores_its_cosines_with_uers_code(st_side):
    class Model(torch.nn.Module):
        def forward(self, features):
            ids = features["input_ids"].float()
            return {"sentence_embedding": torch.stack([ids.sum(1), ids[:, 1], torch.ones(len(ids))], dim=1)}

    rows = [([101, 3, 102], [101, 4, 102], 1.0), ([101, 9, 102], [101, 2, 102], 4.0),
            ([101, 5, 102], [101, 5, 102], 5.0)]
    cosines = [torch.nn.functional.cosine_similarity(torch.tensor([[sum(a), a[1], 1.0]]),
                                                     torch.tensor([[sum(b), b[1], 1.0]])).item() for a, b, _ in rows]
    assert st_side.cosines(Model(), [(a, b) for a, b, _ in rows], batch_size=2) == pytest.approx(cosines)
    assert st_side.scored(Model(), rows) == pytest.approx(sts_correlations(cosines, [1.0, 4.0, 5.0]))


def test_the_uer_side_reads_a_run_and_the_tables_show_every_file(common, tmp_path, monkeypatch):
    uer_side = SCRIPTS["uer_side"]
    records = [{"split": "dev", "epoch": 1, "spearman": 0.5, "pearson": 0.4},
               {"split": "dev", "epoch": 2, "spearman": 0.7, "pearson": 0.6},
               {"split": "test", "epoch": 2, "spearman": 0.65, "pearson": 0.55}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    entry = uer_side.scores(tmp_path, 1)
    assert (entry["best_epoch"], entry["dev"], entry["test"]) == (2, {"spearman": 0.7, "pearson": 0.6},
                                                                   {"spearman": 0.65, "pearson": 0.55})
    assert [record["epoch"] for record in entry["dev_by_epoch"]] == [1, 2]
    assert uer_side.scores(tmp_path / "missing", 1) is None

    monkeypatch.setattr(common, "HERE", tmp_path)
    second = dict(entry, seed=2, test={"spearman": 0.75, "pearson": 0.65})
    common.seed_results.store(common.results_path("uer", "simcse"), {"recipe": common.RECIPES["simcse"]},
                              {1: entry, 2: second}, common.summary)
    table = common.rows("simcse")
    assert "| test (that epoch's model) | Spearman 70.00 ± 7.07, Pearson 60.00 ± 7.07 (n=2) | not run yet |" in table
    assert "| simcse | uer | 2 | 2 | 70.00 / 60.00 | 75.00 / 65.00 |" in common.per_seed()


def test_experiments_results_shows_what_the_results_files_hold(common):
    """The tables of experiments/RESULTS.md's section are what ``common.py`` prints from the committed files."""
    text = (ROOT / "experiments" / "RESULTS.md").read_text(encoding="utf-8")
    for task in common.TASKS:
        assert common.rows(task) in text
    assert common.per_seed() in text


def script_run(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python experiments/sentence_embeddings/NAME.py ARGS`` from the repository root, one thread."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, f"experiments/sentence_embeddings/{name}.py", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)


def test_the_uer_side_runs_each_preset_per_seed():
    done = script_run("uer_side", "--task", "simcse", "--seeds", "1", "2", "--dry-run", "--work", "/tmp/w")
    assert done.returncode == 0, done.stderr
    assert [line.split()[2:4] for line in done.stdout.splitlines()] == [
        ["experiment=chinese_stsb_simcse", "seed=1"], ["experiment=chinese_stsb_simcse", "seed=2"]]
    assert "hydra.run.dir=/tmp/w/simcse/seed2" in done.stdout


@pytest.mark.parametrize("task", ["simcse", "siamese"])
def test_the_quick_peer_trains_and_scores_without_writing_results(task, common, st_side, monkeypatch, capsys):
    """The script's main() in this process, as ``st_side.py --task TASK --quick --seeds 1`` runs it (its command
    line as a process is test_the_peer_needs_a_task_unless_untrained's subject); one thread, restored after."""
    pytest.importorskip("sentence_transformers")
    before = {path.name: path.stat().st_mtime for path in common.HERE.glob("results_*.json")}
    monkeypatch.setattr(sys, "argv", ["st_side.py", "--task", task, "--quick", "--seeds", "1"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    try:
        st_side.main()
    finally:
        torch.set_num_threads(threads)
    entry = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith('{"seed"')))
    assert entry["best_epoch"] == 1 and all(-1 <= entry[split][name] <= 1 for split in ("dev", "test")
                                            for name in ("spearman", "pearson"))
    assert {path.name: path.stat().st_mtime for path in common.HERE.glob("results_*.json")} == before


def test_the_peer_needs_a_task_unless_untrained():
    done = script_run("st_side")
    assert done.returncode == 1
    assert done.stderr.strip() == "st_side.py: give --task siamese or --task simcse (or --untrained)"
