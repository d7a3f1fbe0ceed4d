"""NER (BIO sequence labelling): entity metrics by hand, inputs, fine-tune + infer, bad input."""

import json
import logging
from fractions import Fraction

import pytest
import torch

from uer.cli import preflight
from uer.errors import UerError
from uer.io.checkpoint import CHECKSUM, atomic_torch_save, load_checkpoint, sealed
from uer.models import build_backbone
from uer.app import run_stage
from uer.tasks import make_task as new_task
from uer.tasks.ner import IGNORE, NerModel, bio_entities, entity_report, entity_scores, tag_accuracy
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, compose_config, error_lines, expect_user_error, run_main, slice_file

DATA = ROOT / "datasets" / "test_data" / "msra_ner"
LABEL2ID = ROOT / "datasets" / "msra_ner" / "label2id.json"
# One thread: on a shared 2-core machine two spinning torch threads run ~100x slower.
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100"]
MSRA_TAGS = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"]  # collected order: O first, then sorted


# --------------------------------------------------------------------------- entity metrics, by hand

def test_bio_entities_rule():
    tags = "B-PER I-PER O I-LOC I-LOC B-LOC I-ORG B-PER B-PER O I-PER".split()
    assert bio_entities(tags) == [
        (0, 2, "PER"),  # B-PER I-PER
        (3, 5, "LOC"),  # I-LOC after O starts an entity
        (5, 6, "LOC"),  # B-LOC starts a new entity even after I-LOC
        (6, 7, "ORG"),  # I-ORG after a LOC entity starts an ORG one
        (7, 8, "PER"), (8, 9, "PER"),  # B-PER B-PER: two entities
        (10, 11, "PER"),  # I-PER at the end, after O
    ]
    assert bio_entities(["O", "O"]) == [] and bio_entities([]) == []
    assert bio_entities(["I-ORG", "I-ORG"]) == [(0, 2, "ORG")]  # I at the very start
    # The type is all after the first "-" (conlleval since 2004): ORG-X and ORG differ.
    assert bio_entities(["B-ORG-X", "I-ORG-X", "I-ORG"]) == [(0, 2, "ORG-X"), (2, 3, "ORG")]


# Each case: gold sentences, predicted sentences, then (precision, recall, F1) worked out by hand.
METRIC_CASES = {
    # gold {PER 0-2, LOC 3-4}, pred {PER 0-2}: 1 right of 1 predicted, of 2 gold.
    "one_missed": ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]],
                   (Fraction(1, 1), Fraction(1, 2), Fraction(2, 3))),
    # The span must match exactly: LOC 0-3 vs LOC 0-2.
    "short_span": ([["B-LOC", "I-LOC", "I-LOC"]], [["B-LOC", "I-LOC", "O"]], (0, 0, 0)),
    # The type must match: PER 0-2 vs ORG 0-2.
    "wrong_type": ([["B-PER", "I-PER"]], [["B-ORG", "I-ORG"]], (0, 0, 0)),
    # A predicted I-ORG I-ORG (no B) is the entity ORG 0-2, which is right.
    "i_without_b": ([["B-ORG", "I-ORG", "O"]], [["I-ORG", "I-ORG", "O"]], (1, 1, 1)),
    # pred B-PER I-LOC = PER 0-1 + LOC 1-2, neither is gold PER 0-2: 0 of 2 predicted, 0 of 1 gold.
    "type_switch": ([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]], (0, 0, 0)),
    # gold: LOC 0-2, PER 3-4 | ORG 1-4 | (none) = 3 entities.
    # pred: LOC 0-2, PER 3-4 | ORG 0-2 | PER 0-1 = 4 entities, 2 right.
    # P = 2/4, R = 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = (2/3) / (7/6) = 4/7.
    "three_sentences": (
        [["B-LOC", "I-LOC", "O", "B-PER"], ["O", "B-ORG", "I-ORG", "I-ORG"], ["O", "O"]],
        [["B-LOC", "I-LOC", "O", "B-PER"], ["B-ORG", "I-ORG", "O", "O"], ["B-PER", "O"]],
        (Fraction(1, 2), Fraction(2, 3), Fraction(4, 7)),
    ),
    # Two gold PER entities, one predicted entity covering both: 0 right.
    "merged": ([["B-PER", "B-PER"]], [["B-PER", "I-PER"]], (0, 0, 0)),
    # No entities anywhere: every denominator is 0, every score 0.
    "no_entities": ([["O", "O"]], [["O", "O"]], (0, 0, 0)),
    # Nothing predicted: precision 0 (0/0), recall 0/1.
    "nothing_predicted": ([["B-LOC"]], [["O"]], (0, 0, 0)),
}


@pytest.mark.parametrize("case", sorted(METRIC_CASES))
def test_entity_scores_hand_worked(case):
    gold, pred, (precision, recall, f1) = METRIC_CASES[case]
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(float(precision), abs=1e-12)
    assert scores["recall"] == pytest.approx(float(recall), abs=1e-12)
    assert scores["f1"] == pytest.approx(float(f1), abs=1e-12)


def test_entity_report_scores_each_type_by_hand():
    gold, pred, _ = METRIC_CASES["three_sentences"]
    # LOC 0-2: gold once, predicted once, right.  PER: gold 3-4 (sentence 1), predicted 3-4 (right) and
    # 0-1 in sentence 3 (wrong).  ORG: gold 1-4, predicted 0-2: wrong.
    report = entity_report(gold, pred)["per_class"]
    assert list(report) == ["LOC", "ORG", "PER"]
    assert report["LOC"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert report["ORG"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert report["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    # The types add up to entity_scores: 2 right of 4 predicted and 3 gold.
    right = sum(round(r["recall"] * r["support"]) for r in report.values())
    assert right == 2 and sum(r["support"] for r in report.values()) == 3


def test_tag_accuracy_counts_every_unit_of_every_sentence():
    # 3 units right (B-PER, O, O) of 5; an empty sentence adds nothing.
    gold = [["B-PER", "I-PER", "O"], [], ["O", "B-LOC"]]
    pred = [["B-PER", "O", "O"], [], ["O", "I-LOC"]]
    assert tag_accuracy(gold, pred) == pytest.approx(3 / 5)
    assert tag_accuracy([], []) == 0.0


def test_entity_scores_need_aligned_sentences():
    with pytest.raises(ValueError):
        entity_scores([["O", "O"]], [["O"]])


# --------------------------------------------------------------------------- inputs and head

def make_task(tmp_path, rows, *, seq_length=6, cfg_extra=(), info=None):
    cfg = compose_config(["task=ner", *cfg_extra])
    tokenizer = build_tokenizer(cfg.tokenizer)
    task = new_task({"type": "ner", "label2id_path": None}, tokenizer, seq_length, info)
    path = tmp_path / "rows.tsv"
    path.write_text("text_a\tlabel\n" + "".join(f"{text}\t{tags}\n" for text, tags in rows), encoding="utf-8")
    return task, tokenizer, path


def test_inputs_one_id_per_character_cls_first_truncated_and_masked(tmp_path):
    rows = [("厦 门  大 学", "B-ORG I-ORG I-ORG I-ORG"),  # a run of spaces is one separator
            ("我 在 𠀀 A 看 书 呢", "O O B-LOC B-LOC O O O")]
    task, tok, path = make_task(tmp_path, rows)
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    assert task.info["label2id"] == {"O": 0, "B-LOC": 1, "B-ORG": 2, "I-ORG": 3}
    assert task.labels_num_from(data) == 4
    vocab = tok.vocab
    first, second = data.examples
    assert first.src == [vocab.cls_id, *(vocab.token_to_id(c) for c in "厦门大学")]
    assert first.label == [IGNORE, 2, 3, 3, 3]
    # seq_length=6: [CLS] + 5 characters; an unknown character is [UNK]; "A" is looked up
    # lowercased by the (lowercasing) bert tokenizer, never split into pieces.
    assert second.src == [vocab.cls_id, vocab.token_to_id("我"), vocab.token_to_id("在"), vocab.unk_id,
                          vocab.token_to_id("a"), vocab.token_to_id("看")]
    assert vocab.token_to_id("a") != vocab.unk_id
    assert second.label == [IGNORE, 0, 0, 1, 1, 0]
    assert second.length == 7 and second.tags == rows[1][1].split()
    batch = task.collate(data.examples)
    assert batch["src"].shape == (2, 6)
    assert batch["label"][0].tolist() == [IGNORE, 2, 3, 3, 3, IGNORE]  # padding ignored
    assert batch["seg"][0].tolist() == [1, 1, 1, 1, 1, 0]


def rows_and_backbone(tmp_path, rows, seq_length):
    """The task, the training data of ``rows`` and their batch, and a small backbone (seeded)."""
    task, tok, path = make_task(tmp_path, rows, seq_length=seq_length)
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    cfg = compose_config(["task=ner", *SMALL])
    torch.manual_seed(0)
    return task, data, task.collate(data.examples), build_backbone(cfg.embedding, cfg.encoder, len(tok.vocab))


def test_loss_covers_real_characters_only_and_predictions_pad_with_o(tmp_path):
    rows = [("厦 门", "B-LOC I-LOC"), ("我 在 北 京 看 书 呢", "O O B-LOC I-LOC O O O")]
    task, data, batch, backbone = rows_and_backbone(tmp_path, rows, 5)
    model = task.build_model(backbone, 3).eval()  # no dropout
    assert isinstance(model, NerModel) and tuple(model.output_layer.weight.shape) == (3, 32)
    out = model(batch)
    assert out.stats["ner_loss"][1].item() == 2 + 4  # 2 + (5 - 1) characters, no [CLS], no padding
    logits = model.logits(batch)
    keep = batch["label"] != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[keep], batch["label"][keep])
    torch.testing.assert_close(out.loss, expected)
    # Predicted tags cover every character; the 3 beyond seq_length are O.
    pred = [torch.tensor([[0, 1, 2, 0, 0], [0, 2, 2, 1, 2]], dtype=torch.float)]
    assert task.predicted_tags(pred, data) == [["B-LOC", "I-LOC"],
                                               ["I-LOC", "I-LOC", "B-LOC", "I-LOC", "O", "O", "O"]]
    # Gold: LOC 0-2 | LOC 2-4. Pred: LOC 0-2 | LOC 0-2, LOC 2-4 -> P 2/3, R 2/2.  Tags, over whole
    # sentences as conlleval counts them on the prediction file: 2 + 5 (the 3 unseen O are right) of 9.
    scores = task.evaluate(pred, data, 3)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(0.8) and scores["token_acc"] == pytest.approx(7 / 9)


def test_infer_rows_ignore_labels_and_keep_empty_rows(tmp_path):
    task, _, _ = make_task(tmp_path, [], seq_length=4, info={"label2id": {"O": 0, "B-PER": 1, "I-PER": 2}})
    path = tmp_path / "infer.tsv"
    path.write_text("text_a\n小 明 来 了 吗\n\n好\n", encoding="utf-8")
    data = task.read(path, split="infer", labels_num=None, skip_bad_rows=False)
    assert [example.length for example in data.examples] == [5, 0, 1]
    assert all(set(example.label) == {IGNORE} for example in data.examples)
    outputs = [torch.tensor([[0, 1, 2, 0], [0, 0, 0, 0]]), torch.tensor([[0, 1]])]
    pred = tmp_path / "pred.tsv"
    task.write_predictions(pred, outputs, data, output_logits=False, output_prob=False)
    assert pred.read_text(encoding="utf-8") == "label\nB-PER I-PER O O O\n\nB-PER\n"


# --------------------------------------------------------------------------- fine-tune and infer

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A slice of msra_ner: 96 train rows (6 batches), 24 dev, 24 test, 24 unlabelled."""
    tmp = tmp_path_factory.mktemp("msra")
    return {name: slice_file(DATA / f"{name}.tsv", tmp / f"{name}.tsv", rows)
            for name, rows in (("train", 96), ("dev", 24), ("test", 24), ("test_nolabel", 24))}


def finetune_cfg(data, out, *extra):
    return compose_config(["stage=finetune", "task=ner", f"finetune.train_path={data['train']}",
                           f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['test']}",
                           f"output_model_path={out}", "size=tiny", *SMALL, *FAST, *extra])


def infer(model_path, test_path, pred_path, *extra):
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={model_path}", f"infer.test_path={test_path}",
                              f"infer.prediction_path={pred_path}", "hardware.num_threads=1", *extra]))
    return pred_path.read_text(encoding="utf-8").split("\n")


def characters(path):
    return [len(line.split("\t")[0].split(" ")) for line in path.read_text(encoding="utf-8").splitlines()[1:]]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ner")
    score = run_stage(finetune_cfg(data, out))
    return out, score


def test_finetune_writes_best_and_entity_scores(trained):
    out, score = trained
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    assert records[0]["f1"] == score
    for record in records:  # per entity type, with the gold entities of each as support
        types = record["report"]["per_class"]
        assert set(types) <= {"LOC", "ORG", "PER"} and "confusion" not in record["report"]
        assert all(0.0 <= row["f1"] <= 1.0 and row["support"] >= 0 for row in types.values())
    for record in records:
        assert all(0.0 <= record[key] <= 1.0 for key in ("f1", "precision", "recall", "token_acc"))
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["task"]["type"] == "ner" and payload["task_info"]["labels_num"] == 7
    assert list(payload["task_info"]["label2id"]) == MSRA_TAGS
    assert tuple(payload["model"]["output_layer.weight"].shape) == (7, 32)
    metrics = (out / "metrics.jsonl").read_text()
    assert "ner_loss" in metrics and "ner_acc" in metrics


def test_infer_writes_one_tag_per_character_for_every_row(trained, data, tmp_path):
    out, _ = trained
    lines = infer(out / "best.pt", data["test_nolabel"], tmp_path / "pred.tsv")
    assert lines[0] == "label" and lines[-1] == ""
    rows = lines[1:-1]
    expected = characters(data["test_nolabel"])
    assert len(rows) == len(expected) == 24
    assert [len(row.split(" ")) for row in rows] == expected
    assert max(expected) > 31  # some rows are longer than seq_length: their tails are O
    long_row = rows[expected.index(max(expected))].split(" ")
    assert set(long_row[31:]) == {"O"}
    assert set(tag for row in rows for tag in row.split(" ")) <= set(MSRA_TAGS)
    # A labelled file works too (its labels are ignored), and a longer infer.seq_length.
    labelled = infer(out / "best.pt", data["test"], tmp_path / "pred2.tsv", "infer.seq_length=64")
    assert [len(row.split(" ")) for row in labelled[1:-1]] == characters(data["test"])


def test_label2id_file_is_used_and_stored_so_infer_needs_nothing_else(data, tmp_path):
    label2id = tmp_path / "label2id.json"
    label2id.write_text(LABEL2ID.read_text(encoding="utf-8"), encoding="utf-8")
    small = {name: slice_file(data[name], tmp_path / f"{name}.tsv", 16) for name in ("train", "dev", "test")}
    run_stage(finetune_cfg(small, tmp_path / "ner", f"task.label2id_path={label2id}", "finetune.test_path=null"))
    payload = load_checkpoint(tmp_path / "ner" / "best.pt")
    assert payload["task_info"]["label2id"] == json.loads(LABEL2ID.read_text(encoding="utf-8"))
    label2id.unlink()
    lines = infer(tmp_path / "ner" / "best.pt", small["test"], tmp_path / "pred.tsv")
    assert [len(row.split(" ")) for row in lines[1:-1]] == characters(small["test"])


# --------------------------------------------------------------------------- CRF (task.crf=true)

def test_crf_head_loss_is_nll_per_character_and_predict_is_viterbi(tmp_path):
    rows = [("厦 门", "B-LOC I-LOC"), ("我 在 北 京 看", "O O B-LOC I-LOC O")]
    _, _, batch, backbone = rows_and_backbone(tmp_path, rows, 6)
    model = NerModel(backbone, 3, crf=True).eval()
    out = model(batch)
    emissions = model.logits(batch)[:, 1:]
    mask = batch["label"][:, 1:] != IGNORE  # the characters: no [CLS], no padding
    assert mask.sum(dim=1).tolist() == [2, 5]
    nll = model.crf.nll(emissions, batch["label"][:, 1:], mask)
    torch.testing.assert_close(out.loss, nll.sum() / 7)
    assert out.stats["ner_loss"][1].item() == 7
    predicted = model.predict(batch)
    assert predicted[:, 0].tolist() == [0, 0]  # [CLS] is not tagged
    assert predicted[1, 1:].tolist() == model.crf.decode(emissions, mask)[1].tolist()
    assert predicted[0, 1:3].tolist() == model.crf.decode(emissions[:1, :2], mask[:1, :2])[0].tolist()
    # A batch of empty infer rows (only [CLS]) has no character to decode.
    assert model.predict({"src": batch["src"][:, :1], "seg": batch["seg"][:, :1]}).tolist() == [[0], [0]]


def crf_overrides(data, out):
    return ["stage=finetune", "task=ner", "task.crf=true", "size=smoke", f"finetune.train_path={data['train']}",
            f"finetune.dev_path={data['dev']}", f"output_model_path={out}", "finetune.max_steps=3",
            "finetune.batch_size=8", "finetune.seq_length=32", "hardware.num_threads=1"]


@pytest.fixture(scope="module")
def crf_trained(data, tmp_path_factory):
    """task.crf=true trained 3 steps at size=smoke, in-process (main.py's own path: test_bad_input_via_main)."""
    tmp = tmp_path_factory.mktemp("crf")
    small = {"train": slice_file(data["train"], tmp / "train.tsv", 24), "dev": slice_file(data["dev"], tmp / "dev.tsv", 8)}
    run_stage(compose_config(crf_overrides(small, tmp / "ner")))
    return tmp


def test_crf_checkpoint_records_the_crf_and_its_scores(crf_trained):
    payload = load_checkpoint(crf_trained / "ner" / "best.pt")
    assert payload["config"]["task"]["crf"] is True
    assert tuple(payload["model"]["crf.transitions"].shape) == (7, 7)
    assert {"crf.start", "crf.end"} <= set(payload["model"])
    record = json.loads((crf_trained / "ner" / "results.jsonl").read_text().splitlines()[0])
    assert record["split"] == "dev"
    assert all(0.0 <= record[key] <= 1.0 for key in ("f1", "precision", "recall", "token_acc"))


def test_crf_infer_from_the_checkpoint_alone_decodes_with_its_transitions(crf_trained, data, tmp_path):
    """Transitions that make B-PER I-PER I-PER ... outscore any emissions: the prediction file must hold
    exactly that path, so infer built the CRF from the checkpoint and decoded with Viterbi."""
    payload = load_checkpoint(crf_trained / "ner" / "best.pt")
    payload.pop(CHECKSUM)
    tags = payload["task_info"]["label2id"]
    begin, inside = tags["B-PER"], tags["I-PER"]
    state = payload["model"]
    state["crf.start"][begin] = 1e4
    state["crf.transitions"][begin, inside] = 1e4
    state["crf.transitions"][inside, inside] = 1e4
    forced = tmp_path / "forced.pt"
    atomic_torch_save(sealed(payload), forced)
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={forced}",
                              f"infer.test_path={data['test_nolabel']}", f"infer.prediction_path={tmp_path / 'pred.tsv'}",
                              "hardware.num_threads=1"]))
    rows = (tmp_path / "pred.tsv").read_text(encoding="utf-8").splitlines()[1:]
    expected = characters(data["test_nolabel"])
    assert len(rows) == len(expected)
    for row, length in zip(rows, expected):
        seen = min(length, 31)  # finetune.seq_length=32: [CLS] + 31 characters; the rest are O
        assert row.split(" ") == ["B-PER", *["I-PER"] * (seen - 1), *["O"] * (length - seen)]


# --------------------------------------------------------------------------- bad input

def with_row(src, dst, row, at=3):
    """``src`` with ``row`` inserted as file line ``at + 1``."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[:at]) + row + "".join(lines[at:]), encoding="utf-8")
    return dst


BAD_TRAIN_ROWS = {
    "count": ("厦 门 大 学\tB-ORG I-ORG I-ORG\n", ["3 tags for 4 characters"]),
    "not_bio": ("厦 门\tS-LOC O\n", ["'S-LOC'", "B-TYPE"]),
    "empty": ("\t\n", ["no characters"]),
    "columns": ("厦 门\tB-LOC I-LOC\tx\n", ["3 tab-separated fields"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_TRAIN_ROWS))
def test_bad_train_row_names_file_and_line(data, tmp_path, capsys, kind):
    row, fragments = BAD_TRAIN_ROWS[kind]
    train = with_row(data["train"], tmp_path / "train.tsv", row)
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "ner"), f"{train}:4", *fragments,
                      "finetune.skip_bad_rows=true")
    assert not (tmp_path / "ner").exists() or not (tmp_path / "ner" / "best.pt").exists()


def test_dev_tag_unseen_in_train_names_the_tag(data, tmp_path, capsys):
    dev = with_row(data["dev"], tmp_path / "dev.tsv", "小 明\tB-NAME I-NAME\n", at=2)
    expect_user_error(capsys, finetune_cfg({**data, "dev": dev}, tmp_path / "ner"),
                      f"{dev}:3", "'B-NAME'", "finetune.train_path", "task.label2id_path")


def test_tag_missing_from_label2id_file_names_the_tag(data, tmp_path, capsys):
    train = with_row(data["train"], tmp_path / "train.tsv", "小 明\tB-NAME I-NAME\n")
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "ner",
                                           f"task.label2id_path={LABEL2ID}"),
                      f"{train}:4", "'B-NAME'", "task.label2id_path")


def test_missing_column_names_the_header(data, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    train.write_text("text_a\ttags\n" + "".join(lines[1:]), encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "ner"),
                      f"{train}:1", "'label'", "'tags'")


def test_infer_file_without_text_a_is_refused(trained, tmp_path, capsys):
    out, _ = trained
    bad = tmp_path / "in.tsv"
    bad.write_text("text\n厦 门\n", encoding="utf-8")
    pred = tmp_path / "pred.tsv"
    expect_user_error(capsys, compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                                              f"infer.test_path={bad}", f"infer.prediction_path={pred}"]),
                      f"{bad}:1", "'text_a'")
    assert not pred.exists()


BAD_LABEL2ID = {
    "missing": (None, ["not found", "task.label2id_path=null"]),
    "json": ('{"O": 0, "B-LOC": 1,}', ["label2id.json:1", "not valid JSON"]),
    "list": ('["O", "B-LOC"]', ["JSON list"]),
    "not_int": ('{"O": 0, "B-LOC": "1"}', ["'B-LOC'", "not an integer"]),
    "gap": ('{"O": 0, "B-LOC": 2}', ["[0, 2]", "without gaps"]),
    "not_bio": ('{"O": 0, "LOC": 1}', ["'LOC'", "B-TYPE"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_LABEL2ID))
def test_bad_label2id_file_is_one_clear_error(data, tmp_path, capsys, kind):
    text, fragments = BAD_LABEL2ID[kind]
    path = tmp_path / "label2id.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    expect_user_error(capsys, finetune_cfg(data, tmp_path / "ner", f"task.label2id_path={path}"),
                      str(path), *fragments)


def test_labels_num_is_not_a_key_of_ner():
    with pytest.raises(UerError) as err:
        preflight(["task=ner", "task.labels_num=3"], multirun=False)
    assert str(err.value).startswith("task.labels_num is a key of task=classifier")


def test_skip_bad_rows_skips_and_counts(data, tmp_path, caplog):
    rows = "".join(row for row, _ in BAD_TRAIN_ROWS.values()) + "小 明\tB-NAME I-NAME\n"
    train = with_row(data["train"], tmp_path / "train.tsv", rows)
    small = {name: slice_file(data[name], tmp_path / f"{name}_small.tsv", 16) for name in ("dev", "test")}
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        run_stage(finetune_cfg({**data, **small, "train": train}, tmp_path / "ner", "finetune.skip_bad_rows=true",
                               f"task.label2id_path={LABEL2ID}"))
    assert f"{train}: skipped 5 bad rows" in caplog.text
    assert (tmp_path / "ner" / "best.pt").exists()


def test_bad_input_via_main_is_one_line_exit_2(data, tmp_path):
    train = with_row(data["train"], tmp_path / "train.tsv", "厦 门\tB-LOC\n")
    proc = run_main(["stage=finetune", "task=ner", f"finetune.train_path={train}", f"finetune.dev_path={data['dev']}",
                     f"output_model_path={tmp_path / 'ner'}", "hardware.num_threads=1"], tmp_path / "run")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{train}:4" in lines[0] and "1 tags for 2 characters" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_infer_on_unsegmented_chinese_warns_once_naming_the_row(tmp_path, caplog):
    task, _, _ = make_task(tmp_path, [], seq_length=8, info={"label2id": {"O": 0, "B-LOC": 1, "I-LOC": 2}})
    path = tmp_path / "infer.tsv"
    path.write_text("text_a\n我 在 北 京\n我在北京工作\n他去了上海\nNew York\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        data = task.read(path, split="infer", labels_num=None, skip_bad_rows=False)
    assert [example.length for example in data.examples] == [4, 1, 1, 2]  # read as given, one unit each
    assert caplog.messages == [f"{path}:3: text_a holds '我在北京工作', 6 characters as one unit (the first such row): "
                               "each unit gets one vocabulary id and one tag, so it is [UNK] tagged as a whole; split "
                               "the text into space-separated characters as the training file is, e.g. "
                               "'我 在 北 京 工 作'"]
