"""dbqa: MRR/MAP against hand-worked rankings, reading, fine-tuning and inference, bad input."""

import json
import random
from fractions import Fraction

import pytest
import torch

from uer.cli import preflight
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tasks import TaskData, make_task as new_task
from uer.tasks.dbqa import DbqaExample
from uer.tasks.ranking_metrics import average_precision, ranked_relevance, ranking_metrics, reciprocal_rank
from uer_testing import ROOT, SMALL, compose_config, error_lines, expect_user_error, run_main

REVIEWS = ROOT / "datasets" / "test_data" / "book_review" / "train.tsv"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=tiny", *SMALL]
HEADER = "qid\tlabel\ttext_a\ttext_b\n"


# ---------------------------------------------------------------- metrics, worked by hand

# Four questions, their rows interleaved (grouping is by qid, not by adjacency):
#   q1: scores .9 .5 .7 .1, relevant 0 1 0 1 -> ranked  .9(0) .7(0) .5(1) .1(1)
#       RR = 1/3;  AP = (1/3 + 2/4) / 2 = 5/12
#   q2: scores .2 .8, relevant 1 0           -> ranked  .8(0) .2(1)
#       RR = 1/2;  AP = (1/2) / 1 = 1/2
#   q3: scores .6 .3 .4, relevant 1 1 0      -> ranked  .6(1) .4(0) .3(1)
#       RR = 1;    AP = (1/1 + 2/3) / 2 = 5/6
#   q4: scores .9 .1, relevant 0 0           -> no relevant candidate: RR = AP = 0
# MRR = (1/3 + 1/2 + 1 + 0) / 4 = 11/24;  MAP = (5/12 + 1/2 + 5/6 + 0) / 4 = 7/16
ROWS = [("q1", .9, 0), ("q2", .2, 1), ("q1", .5, 1), ("q3", .6, 1), ("q4", .9, 0), ("q1", .7, 0),
        ("q3", .3, 1), ("q2", .8, 0), ("q1", .1, 1), ("q3", .4, 0), ("q4", .1, 0)]


def question(qid):
    return [s for q, s, _ in ROWS if q == qid], [r for q, _, r in ROWS if q == qid]


@pytest.mark.parametrize("qid, rr, ap", [("q1", Fraction(1, 3), Fraction(5, 12)),
                                         ("q2", Fraction(1, 2), Fraction(1, 2)),
                                         ("q3", Fraction(1), Fraction(5, 6)),
                                         ("q4", Fraction(0), Fraction(0))])
def test_reciprocal_rank_and_average_precision_per_question(qid, rr, ap):
    scores, relevant = question(qid)
    assert reciprocal_rank(scores, relevant) == pytest.approx(float(rr))
    assert average_precision(scores, relevant) == pytest.approx(float(ap))


def test_mrr_map_average_over_all_questions_those_without_relevant_candidates_scoring_0():
    qids, scores, relevant = zip(*ROWS)
    result = ranking_metrics(qids, scores, relevant)
    assert result["mrr"] == pytest.approx(float(Fraction(11, 24)))
    assert result["map"] == pytest.approx(float(Fraction(7, 16)))
    assert (result["questions"], result["unanswerable"]) == (4, 1)


def test_ties_rank_relevant_candidates_after_irrelevant_ones():
    # Constant scores must not earn credit from the file order: ranked 0 0 1 -> RR = AP = 1/3.
    assert ranked_relevance([.5, .5, .5], [0, 1, 0]) == [False, False, True]
    assert reciprocal_rank([.5, .5, .5], [1, 0, 0]) == pytest.approx(1 / 3)
    # .8(0) then the tie at .5 -> 0, 1, 1: RR = 1/3, AP = (1/3 + 2/4) / 2 = 5/12.
    assert average_precision([.5, .8, .5, .5], [1, 0, 1, 0]) == pytest.approx(5 / 12)
    # A perfect ranking scores 1 on both.
    assert reciprocal_rank([.9, .8, .1], [1, 1, 0]) == average_precision([.9, .8, .1], [1, 1, 0]) == 1.0


def test_no_relevant_candidate_anywhere_gives_zero():
    assert ranking_metrics(["a", "a"], [.1, .2], [0, 0]) == {"mrr": 0.0, "map": 0.0, "questions": 1,
                                                             "unanswerable": 1}
    assert ranking_metrics([], [], []) == {"mrr": 0.0, "map": 0.0, "questions": 0, "unanswerable": 0}


def make_task(seq_length=32, **cfg):
    tokenizer = build_tokenizer(compose_config([]).tokenizer)
    return new_task({"type": "dbqa", "pooling": "first", **cfg}, tokenizer,
                            seq_length), tokenizer


def test_evaluate_ranks_candidates_by_how_much_label_1_wins():
    task, _ = make_task()
    examples = [DbqaExample([101], [1], rel, line, qid=q) for line, (q, _, rel) in enumerate(ROWS, start=2)]
    # Logits [0, logit(p)]: the probability of label 1 is p, so the ranking is that of ROWS.
    probs = torch.tensor([s for _, s, _ in ROWS])
    logits = torch.stack([torch.zeros_like(probs), torch.log(probs / (1 - probs))], dim=1)
    scores = task.evaluate([logits[:4], logits[4:]], TaskData("x", examples), 2)
    assert scores["mrr"] == pytest.approx(11 / 24, abs=1e-6) and scores["map"] == pytest.approx(7 / 16, abs=1e-6)
    # Predicted label = p > .5: rows .9 .2 .5 .6 .9 .7 .3 .8 .1 .4 .1 -> 1 0 0 1 1 1 0 1 0 0 0 (.5 ties to 0);
    # gold 0 1 1 1 0 0 1 0 1 0 0 -> right at rows 4 (q3 .6), 10, 11: 3 of 11.
    assert scores["acc"] == pytest.approx(3 / 11)
    # Label 1: 1 right (row 4) of 5 predicted and of 5 gold -> P = R = F1 = 1/5.
    assert scores["f1"] == pytest.approx(1 / 5)
    assert list(scores) == list(task.metrics) == ["mrr", "map", "acc", "f1"]


def test_sure_candidates_keep_their_order_where_the_probability_rounds_to_1():
    task, _ = make_task()
    # Margins 30 and 20 both give probability 1.0 in float32; ranked by margin, the relevant
    # candidate (margin 30) is first: RR = AP = 1.  Ranked by probability it would tie and go last.
    examples = [DbqaExample([101], [1], rel, line, qid="q") for line, rel in ((2, 0), (3, 1))]
    logits = torch.tensor([[0.0, 20.0], [0.0, 30.0]])
    assert torch.softmax(logits, dim=-1)[:, 1].tolist() == [1.0, 1.0]
    scores = task.evaluate([logits], TaskData("x", examples), 2)
    assert scores["mrr"] == 1.0 and scores["map"] == 1.0


# ---------------------------------------------------------------- reading

def test_read_pairs_by_header_in_any_order(tmp_path):
    task, tok = make_task(seq_length=16)
    path = tmp_path / "d.tsv"
    path.write_text("text_b\tqid\ttext_a\tlabel\n好书\t7\t书好吗\t1\n不错\t7\t书好吗\t0\n", encoding="utf-8")
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    first = data.examples[0]
    cls, sep = tok.vocab.cls_id, tok.vocab.sep_id
    assert first.src == [cls, *tok.encode("书好吗"), sep, *tok.encode("好书"), sep]
    assert first.seg == [1] * 5 + [2] * 3
    assert [(e.qid, e.label, e.line) for e in data.examples] == [("7", 1, 2), ("7", 0, 3)]
    assert task.labels_num_from(data) == 2 and task.info == {"text_pair": True}
    batch = task.collate(data.examples)
    assert set(batch) == {"src", "seg", "label"} and batch["label"].tolist() == [1, 0]


# ---------------------------------------------------------------- fine-tuning and inference

def write_dbqa(path, reviews, questions, seed, unanswered=0, labelled=True):
    """Questions from reviews: text_a is a review's opening, text_b its rest (label 1) or another's (0)."""
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        own = reviews[q]
        others = rng.sample([r for r in reviews if r is not own], 3)
        candidates = [(0, o[len(o) // 2:]) for o in others]
        if q >= unanswered:
            candidates.append((1, own[len(own) // 2:]))
        rng.shuffle(candidates)
        rows += [(f"q{seed}-{q}", label, own[:len(own) // 2][:12], text) for label, text in candidates]
    if labelled:
        lines = [HEADER.rstrip("\n")] + [f"{q}\t{label}\t{a}\t{b}" for q, label, a, b in rows]
    else:
        lines = ["text_a\ttext_b\tqid"] + [f"{a}\t{b}\t{q}" for q, _, a, b in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dbqa")
    reviews = [line.split("\t")[1] for line in REVIEWS.read_text(encoding="utf-8").splitlines()[1:]]
    return {"train": write_dbqa(tmp / "train.tsv", reviews[:40], 16, seed=1),
            "dev": write_dbqa(tmp / "dev.tsv", reviews[40:80], 6, seed=2, unanswered=1),
            "test": write_dbqa(tmp / "test.tsv", reviews[80:120], 5, seed=3),
            "test_nolabel": write_dbqa(tmp / "test_nolabel.tsv", reviews[80:120], 5, seed=3, labelled=False)}


def finetune_cfg(data, out, *extra):
    return compose_config(["stage=finetune", "task=dbqa", f"finetune.train_path={data['train']}",
                           f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['test']}",
                           f"output_model_path={out}", *FAST, *extra])


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dbqa_model")
    return out, run_stage(finetune_cfg(data, out))


def test_finetune_reports_mrr_map_acc_and_saves_a_two_label_model(model):
    out, score = model
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    for record, answered in zip(records, (5 / 6, 1)):  # dev: 1 of its 6 questions has no relevant candidate
        assert all(0 <= record[key] <= 1 for key in ("mrr", "map", "acc", "f1"))
        # Each answered question has 4 candidates, one relevant: RR is 1, 1/2, 1/3 or 1/4, and AP = RR;
        # the unanswered one scores 0.
        assert record["mrr"] >= 0.25 * answered and record["map"] == pytest.approx(record["mrr"])
    assert score == records[0]["mrr"]  # mrr picks the best epoch
    payload = load_checkpoint(out / "best.pt")
    task = payload["config"]["task"]
    assert (task["type"], payload["task_info"]["labels_num"]) == ("dbqa", 2)
    assert payload["model"]["output_layer_2.weight"].shape == (2, 32)


def test_infer_writes_qid_score_label_per_input_row(model, data, tmp_path):
    out, _ = model
    pred = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={data['test_nolabel']}", f"infer.prediction_path={pred}",
                              "infer.output_prob=true", "hardware.num_threads=1"]))
    lines = pred.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["qid", "score", "label", "prob"]
    inputs = [line.split("\t") for line in data["test_nolabel"].read_text(encoding="utf-8").splitlines()[1:]]
    assert len(lines) == len(inputs) + 1 == 21
    for line, (_, _, qid) in zip(lines[1:], inputs):
        got_qid, score, label, prob = line.split("\t")
        p0, p1 = (float(x) for x in prob.split())
        assert got_qid == qid and float(score) == pytest.approx(p1, abs=1e-5)
        assert int(label) == int(p1 > p0)


def test_documented_command_via_main(data, tmp_path):
    out = tmp_path / "model"
    proc = run_main(["stage=finetune", "task=dbqa", f"finetune.train_path={data['train']}",
                     f"finetune.dev_path={data['dev']}", f"output_model_path={out}", *FAST], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert set(record) >= {"mrr", "map", "acc", "f1"}
    assert (out / "best.pt").is_file()


# ---------------------------------------------------------------- bad input

BAD_ROWS = {
    "not_integer": ("q9\tyes\t问题\t回答\n", "'yes' is not an integer"),
    "not_0_or_1": ("q9\t2\t问题\t回答\n", "label 2 is not 0 or 1"),
    "empty_qid": (" \t1\t问题\t回答\n", "qid field is empty"),
    "fields": ("q9\t1\t问题\n", "3 tab-separated fields"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_row_names_file_and_line(data, tmp_path, capsys, kind):
    row, fragment = BAD_ROWS[kind]
    lines = data["dev"].read_text(encoding="utf-8").splitlines(keepends=True)
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(lines[:5]) + row + "".join(lines[5:]), encoding="utf-8")
    line = expect_user_error(capsys, finetune_cfg({**data, "dev": dev}, tmp_path / "m"), f"{dev}:6", fragment,
                             "finetune.skip_bad_rows=true")
    assert kind in ("fields", "empty_qid") or "1 (text_b answers" in line
    assert not (tmp_path / "m" / "best.pt").exists()


def test_missing_qid_column_names_the_header(data, tmp_path, capsys):
    train = tmp_path / "train.tsv"
    text = data["train"].read_text(encoding="utf-8")
    train.write_text(text.replace("qid\t", "question\t", 1), encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "train": train}, tmp_path / "m"), f"{train}:1", "'qid'",
                      "qid<TAB>label<TAB>text_a<TAB>text_b")
    assert not (tmp_path / "m" / "best.pt").exists()


def test_infer_file_without_qid_is_refused(model, data, tmp_path, capsys):
    out, _ = model
    bad = tmp_path / "nolabel.tsv"
    bad.write_text("text_a\ttext_b\n问题\t回答\n", encoding="utf-8")
    pred = tmp_path / "pred.tsv"
    expect_user_error(capsys, compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                                              f"infer.test_path={bad}", f"infer.prediction_path={pred}",
                                              "hardware.num_threads=1"]), f"{bad}:1", "'qid'")
    assert not pred.exists()


def test_file_without_any_relevant_candidate_is_refused(data, tmp_path, capsys):
    dev = tmp_path / "dev.tsv"
    dev.write_text(HEADER + "a\t0\t问题\t回答\nb\t0\t问题\t别的\n", encoding="utf-8")
    expect_user_error(capsys, finetune_cfg({**data, "dev": dev}, tmp_path / "m"), str(dev), "no row has label 1")


@pytest.mark.parametrize("key", ["task.labels_num", "task.soft_targets"])
def test_options_dbqa_cannot_use_are_not_its_keys(key):
    with pytest.raises(UerError) as err:
        preflight(["task=dbqa", f"{key}=3"], multirun=False)
    assert str(err.value).startswith(f"{key} is a key of task=classifier")


def test_bad_input_via_main_is_one_line_exit_2(data, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text(HEADER + "q\t1\t问题\t回答\nq\t3\t问题\t回答\n", encoding="utf-8")
    proc = run_main(["stage=finetune", "task=dbqa", f"finetune.train_path={train}", f"finetune.dev_path={data['dev']}",
                     f"output_model_path={tmp_path / 'm'}", "hardware.num_threads=1"], tmp_path / "run")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{train}:3" in lines[0] and "not 0 or 1" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
