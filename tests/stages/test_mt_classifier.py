"""mt_classifier: one backbone, one head per dataset, interleaved batches, per-dataset dev scores;
and the batching it builds on (SampledBatches, with length buckets)."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from uer.cli import preflight
from uer.errors import UerError
from uer.finetuning.batches import SampledBatches
from uer.finetuning.multi_task import InterleavedBatches
from uer.io.checkpoint import load_checkpoint
from uer.models import build_backbone
from uer.app import run_stage
from uer.tasks import TaskData, make_task
from uer.tasks.classifier import ClsExample
from uer.tasks.metrics import classification_metrics
from uer.tasks.mt_classifier import MtClassifierModel
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, run_main

DATA = ROOT / "datasets" / "test_data"
BOOK, SENTI = DATA / "book_review", DATA / "chnsenticorp"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=tiny", *SMALL]


def mt_cfg(paths, out, *extra):
    return compose_config(["stage=finetune", "task=mt_classifier", f"task.dataset_paths=[{','.join(map(str, paths))}]",
                           f"output_model_path={out}", *FAST, *extra])


def infer(model_path, test_path, pred_path, *extra):
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={model_path}", f"infer.test_path={test_path}",
                              f"infer.prediction_path={pred_path}", "hardware.num_threads=1", *extra]))
    lines = pred_path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def copy_dataset(src, dst, **replace):
    """A copy of dataset folder ``src`` at ``dst``; ``replace`` maps file stems to new contents (None: left out)."""
    dst.mkdir(parents=True)
    for name in ("train", "dev"):
        text = replace.get(name, (src / f"{name}.tsv").read_text(encoding="utf-8"))
        if text is not None:
            (dst / f"{name}.tsv").write_text(text, encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "model"
    score = run_stage(mt_cfg([BOOK, SENTI], out))
    return out, score


def test_one_head_per_dataset_under_uer_names(mt_run):
    out, _ = mt_run
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["task"]["type"] == "mt_classifier"
    assert payload["task_info"] == {"text_pair": False, "labels_nums": [2, 2]}
    heads = sorted(key for key in payload["model"] if key.startswith("output_layers_"))
    assert heads == [f"output_layers_{layer}.{i}.{kind}" for layer in (1, 2) for i in (0, 1)
                     for kind in ("bias", "weight")]
    assert payload["model"]["output_layers_1.1.weight"].shape == (32, 32)
    assert payload["model"]["output_layers_2.0.weight"].shape == (2, 32)
    assert not torch.equal(payload["model"]["output_layers_2.0.weight"], payload["model"]["output_layers_2.1.weight"])


def test_both_dev_metrics_reported_and_best_by_their_mean(mt_run):
    out, score = mt_run
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["dev", "test"]  # both folders hold a test.tsv
    for record in records:
        for name in ("acc", "macro_f1"):
            assert record[name] == pytest.approx((record[f"{name}_0"] + record[f"{name}_1"]) / 2)
    assert score == records[0]["acc"]


def test_checkpoint_reloads_for_infer_and_each_head_scores_its_dataset(mt_run, tmp_path):
    out, _ = mt_run
    dev = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()][0]
    for i, folder in enumerate((BOOK, SENTI)):
        header, rows = infer(out, folder / "dev.tsv", tmp_path / f"dev{i}.tsv", "infer.output_prob=true")
        assert header == ["label_0", "label_1", "prob_0", "prob_1"] and len(rows) == 50
        gold = [int(line.split("\t")[0]) for line in (folder / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
        pred = [int(row[i]) for row in rows]
        assert classification_metrics(gold, pred, 2)["acc"] == pytest.approx(dev[f"acc_{i}"])
        for row in rows:
            prob = [float(x) for x in row[2 + i].split()]
            assert sum(prob) == pytest.approx(1, abs=1e-4) and int(row[i]) == int(np.argmax(prob))
    header, rows = infer(out / "best.pt", BOOK / "test_nolabel.tsv", tmp_path / "nolabel.tsv",
                         "infer.output_logits=true")
    assert header == ["label_0", "label_1", "logits_0", "logits_1"] and len(rows) == 50


def small_model(labels_nums=(2, 3)):
    cfg = compose_config([*SMALL])
    tokenizer = build_tokenizer(cfg.tokenizer)
    torch.manual_seed(0)
    backbone = build_backbone(cfg.embedding, cfg.encoder, len(tokenizer.vocab))
    return MtClassifierModel(backbone, list(labels_nums), "first").eval(), tokenizer


def test_loss_uses_each_rows_own_head_and_only_that_head_learns():
    model, tok = small_model()
    src = torch.tensor([[tok.vocab.cls_id, 100 + i, tok.vocab.sep_id] for i in range(3)])
    batch = {"src": src, "seg": torch.ones_like(src), "label": torch.tensor([1, 2, 0]),
             "dataset": torch.tensor([0, 1, 1])}
    logits = model.predict(batch)
    assert logits.shape == (3, 5)  # heads of 2 and 3 classes side by side
    expected = (F.cross_entropy(logits[0:1, :2], torch.tensor([1]), reduction="sum")
                + F.cross_entropy(logits[1:, 2:], torch.tensor([2, 0]), reduction="sum")) / 3
    out = model(batch)
    torch.testing.assert_close(out.loss, expected)
    assert float(out.stats["cls_loss"][1]) == 3
    only_first = {key: value[:1] for key, value in batch.items()}
    model.zero_grad()
    model(only_first).loss.backward()
    assert model.output_layers_2[0].weight.grad.abs().sum() > 0
    assert model.output_layers_2[1].weight.grad is None or not model.output_layers_2[1].weight.grad.any()


def test_an_epoch_interleaves_every_batch_of_every_dataset_once():
    cfg = compose_config(["task=mt_classifier"])
    task = make_task(dict(cfg.task), build_tokenizer(cfg.tokenizer), 8)
    # Dataset i's rows are i + 3 tokens long, so a batch's width tells whose rows it holds.
    datasets = [TaskData(f"d{i}", [ClsExample([1] * (i + 3), [1] * (i + 3), 0, n) for n in range(rows)])
                for i, rows in enumerate((12, 4))]
    batches = InterleavedBatches(task, datasets, 4, seed=3, folders=[ROOT, ROOT])
    assert batches.batches_per_epoch == 4
    for _ in range(2):  # two epochs
        owners = []
        for _ in range(4):
            batch = batches.next_batch()
            assert batch["dataset"].unique().numel() == 1 and batch["src"].size(0) == 4
            owners.append(int(batch["dataset"][0]))
            assert batch["src"].size(1) == owners[-1] + 3
        assert sorted(owners) == [0, 0, 0, 1]
    again = InterleavedBatches(task, datasets, 4, seed=3, folders=[ROOT, ROOT])
    first = [int(again.next_batch()["dataset"][0]) for _ in range(8)]
    other = InterleavedBatches(task, datasets, 4, seed=3, folders=[ROOT, ROOT])
    assert first == [int(other.next_batch()["dataset"][0]) for _ in range(8)]


def test_missing_folder_or_file_names_it(tmp_path, capsys):
    expect_user_error(capsys, mt_cfg([BOOK, tmp_path / "nowhere"], tmp_path / "m"),
                      f"task.dataset_paths[1]={tmp_path / 'nowhere'}", "not found")
    no_train = copy_dataset(BOOK, tmp_path / "no_train", train=None)
    expect_user_error(capsys, mt_cfg([BOOK, no_train], tmp_path / "m"),
                      f"task.dataset_paths[1]={no_train}", "has no train.tsv")
    no_dev = copy_dataset(BOOK, tmp_path / "no_dev", dev=None)
    expect_user_error(capsys, mt_cfg([no_dev, SENTI], tmp_path / "m"),
                      f"task.dataset_paths[0]={no_dev}", "has no dev.tsv")
    expect_user_error(capsys, mt_cfg([], tmp_path / "m"), "task.dataset_paths is empty")
    assert not (tmp_path / "m").exists()


def test_bad_row_in_the_second_dataset_names_file_and_line(tmp_path, capsys):
    lines = (SENTI / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    bad = copy_dataset(SENTI, tmp_path / "bad", train="".join(lines[:3]) + "7\t好\t多余\n" + "".join(lines[3:]))
    expect_user_error(capsys, mt_cfg([BOOK, bad], tmp_path / "m"), f"{bad / 'train.tsv'}:4", "3 tab-separated")


def test_datasets_with_different_columns_are_refused(tmp_path, capsys):
    def pairs(path):
        out = ["label\ttext_a\ttext_b"]
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            label, text = line.split("\t")
            out.append(f"{label}\t{text[:4]}\t{text[4:] or '。'}")
        return "\n".join(out) + "\n"

    paired = copy_dataset(SENTI, tmp_path / "pairs", train=pairs(SENTI / "train.tsv"), dev=pairs(SENTI / "dev.tsv"))
    expect_user_error(capsys, mt_cfg([BOOK, paired], tmp_path / "m"), f"{paired / 'train.tsv'}:1",
                      "needs the same columns")


def test_soft_targets_are_not_a_key_of_mt_classifier():
    with pytest.raises(UerError) as err:
        preflight(["stage=finetune", "task=mt_classifier", "task.soft_targets=true"], multirun=False)
    assert str(err.value).startswith("task.soft_targets is a key of task=classifier / classifier_cv, not of "
                                     "task=mt_classifier")


def test_documented_command_via_main(tmp_path):
    small = [copy_dataset(folder, tmp_path / folder.name,
                          train="".join((folder / "train.tsv").read_text(encoding="utf-8").splitlines(True)[:41]))
             for folder in (BOOK, SENTI)]
    proc = run_main(["stage=finetune", "task=mt_classifier", f"task.dataset_paths=[{small[0]},{small[1]}]",
                     f"output_model_path={tmp_path / 'mt'}", *FAST], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    dev = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert {"acc_0", "acc_1", "macro_f1_0", "macro_f1_1"} <= set(dev)


def test_length_bucketing_groups_similar_rows_and_keeps_each_row_once():
    cfg = compose_config(["task=classifier"])
    task = make_task(dict(cfg.task), build_tokenizer(cfg.tokenizer), 64)
    lengths = np.random.default_rng(5).permutation(np.arange(1, 41))  # 40 rows, lengths 1..40 in random order
    examples = [ClsExample([1] * int(n), [1] * int(n), 0, row) for row, n in enumerate(lengths)]
    # 10 batches are fewer than one bucket (50 batches): batches are the rows sorted by length, four by four.
    batches = SampledBatches(task, examples, 4, seed=1, source="rows", length_bucketing=True)
    seen = []
    for _ in range(2):  # two epochs
        epoch = [batches.next_batch()["src"] for _ in range(10)]
        assert sorted(src.size(1) for src in epoch) == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
        assert sorted(int(n) for src in epoch for n in (src != 0).sum(dim=1)) == list(range(1, 41))
        seen.append([src.size(1) for src in epoch])
    assert seen[0] != seen[1] and seen[0] != sorted(seen[0])  # batch order is reshuffled every epoch
    again = SampledBatches(task, examples, 4, seed=1, source="rows", length_bucketing=True)
    assert [again.next_batch()["src"].size(1) for _ in range(10)] == seen[0]
    plain = SampledBatches(task, examples, 4, seed=1, source="rows")
    assert sum(plain.next_batch()["src"].size(1) for _ in range(10)) > sum(seen[0])
