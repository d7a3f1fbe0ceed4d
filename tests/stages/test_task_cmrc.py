"""CMRC span extraction: metrics by hand, token->character offsets, windows, decoding, fine-tune + infer, bad input."""

import json
import logging
import random
import re

import pytest
import torch

from uer.cli import preflight
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tasks import make_task as new_task
from uer.tasks.cmrc import best_spans, split_pieces, tokenize_with_offsets
from uer.tasks.latin_words import latin_words
from uer.tasks.mrc_metrics import char_segments, exact_match, f1_score, longest_common_run, mrc_scores, segments
from uer_testing import ROOT, SMALL, compose_config, error_lines, run_main

DATA = ROOT / "datasets" / "test_data" / "cmrc"
FAST = ["hardware.num_threads=1", "finetune.seq_length=96", "task.doc_stride=64", "finetune.batch_size=16",
        "finetune.epochs_num=1", "finetune.report_steps=100"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(compose_config([]).tokenizer)


def make_task(tokenizer, seq_length=96, **cfg):
    return new_task({"type": "cmrc", "doc_stride": 64, "max_answer_length": 30, **cfg},
                            tokenizer, seq_length)


def squad(*paragraphs):
    """A SQuAD file from (context, [(id, question, [(text, start), ...]), ...]) pairs."""
    return {"version": "test", "data": [{"paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": q, "answers": [{"text": t, "answer_start": s}
                                                                            for t, s in answers]}
                                     for qid, q, answers in qas]}
        for context, qas in paragraphs]}]}


def write(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- metrics, worked by hand

def test_official_f1_scores_words_of_latin_runs_and_single_chinese_characters():
    # 1963 vs 1963年: segments [1963] vs [1963, 年]; LCS 1, P = 1, R = 1/2, F1 = 2/3.
    assert segments("1963年") == ["1963", "年"]
    assert f1_score("1963", ["1963年"]) == pytest.approx(2 / 3)
    # Per character (the original toolkit): 4 of 5 characters, P = 1, R = 4/5, F1 = 8/9.
    assert f1_score("1963", ["1963年"], char_segments) == pytest.approx(8 / 9)
    assert exact_match("1963", ["1963年"]) == 0.0
    # Mixed: （ ） are dropped, the rest is 罗 亚 尔 港 号 uss port royal (8); the prediction is 3 words
    # of it: P = 1, R = 3/8, F1 = 6/11.  Per character: 14 of 19 (spaces count), F1 = 28/33.
    assert segments("罗亚尔港号（USS Port Royal）") == ["罗", "亚", "尔", "港", "号", "uss", "port", "royal"]
    assert f1_score("USS Port Royal", ["罗亚尔港号（USS Port Royal）"]) == pytest.approx(6 / 11)
    assert f1_score("USS Port Royal", ["罗亚尔港号（USS Port Royal）"], char_segments) == pytest.approx(28 / 33)
    # Windows vs Windows XP系统: [windows] vs [windows, xp, 系, 统], F1 = 2 * (1/4) / (5/4) = 2/5;
    # per character 7 of 12, F1 = 14/19.
    assert f1_score("Windows", ["Windows XP系统"]) == pytest.approx(2 / 5)
    assert f1_score("Windows", ["Windows XP系统"], char_segments) == pytest.approx(14 / 19)
    # Part of a word is no word: Royal vs Royale scores 0 (per character 10/11).
    assert f1_score("Royal", ["Royale"]) == 0.0
    assert f1_score("Royal", ["Royale"], char_segments) == pytest.approx(10 / 11)
    # Chinese only: every character is a segment either way.
    assert f1_score("北京大学", ["北京"]) == pytest.approx(2 / 3) == f1_score("北京大学", ["北京"], char_segments)
    assert f1_score("1994年7月", ["1994年7月9日"]) == pytest.approx(2 * (4 / 6) / (1 + 4 / 6))  # [1994 年 7 月] of 6
    assert f1_score("法国", ["美国海军"]) == pytest.approx(2 * (1 / 2) * (1 / 4) / (1 / 2 + 1 / 4))
    # The common run must be contiguous: [a b c d] and [a c b d] share runs of 1 only.
    assert longest_common_run(list("abcd"), list("acbd")) == 1 and longest_common_run([], ["a"]) == 0
    # The best answer counts; nothing in common, or nothing predicted, is 0.
    assert f1_score("北京大学", ["北京", "北京大学"]) == 1.0
    assert f1_score("无关", ["美国"]) == 0.0 and f1_score("", ["美国"]) == 0.0


def test_official_f1_lowercases_and_the_original_toolkits_does_not():
    assert f1_score("port royal", ["Port Royal"]) == 1.0
    # Per character, case counts: the longest shared run is "ort " (or "oyal"), 4 of 10 each way.
    assert f1_score("port royal", ["Port Royal"], char_segments) == pytest.approx(0.4)
    # Punctuation in the script's list is dropped before segmenting, so it joins what is around it.
    assert segments("ω-force") == ["ωforce"] and f1_score("ω-force", ["ωforce"]) == 1.0
    # Marks outside the list are words of their own: (1963) is ( 1963 ), P = 1/3, R = 1, F1 = 1/2.
    assert segments("(1963)") == ["(", "1963", ")"] and f1_score("(1963)", ["1963"]) == pytest.approx(0.5)
    assert segments("J.K.罗琳") == ["j.k", ".", "罗", "琳"]
    assert segments("约3.5%，共1,000人") == ["约", "3.5", "%", "共", "1,000", "人"]


def test_official_em_drops_only_the_listed_punctuation():
    assert exact_match("《战国无双3》", ["战国无双3"]) == 1.0
    assert exact_match(" Port Royal ", ["port royal"]) == 1.0  # lowercased, ends stripped
    assert exact_match("ω-force", ["ωforce"]) == 1.0
    assert exact_match("PortRoyal", ["Port Royal"]) == 0.0  # a space inside is kept
    assert exact_match("(1963)", ["1963"]) == 0.0  # ( ) are not in the list (（ ） are)
    assert exact_match("（1963）", ["1963"]) == 1.0
    assert exact_match("等等…", ["等等"]) == 0.0  # the list's "……" never matches a single "…"
    assert exact_match("北京大学", ["北京", "北京大学"]) == 1.0
    # Both empty once cleaned: EM 1, F1 0 (no segment to share), as in the script.
    assert exact_match("。", ["，"]) == 1.0 and f1_score("。", ["，"]) == 0.0


def test_latin_runs_are_cut_as_the_penn_treebank_tokenizer_cuts_them():
    # Each expectation is what nltk.word_tokenize gives for the run.
    cases = {
        "henry a. walsh": ["henry", "a.", "walsh"], "u.s. army": ["u.s.", "army"], "j.k.": ["j.k", "."],
        "1.6ghz intel atom": ["1.6ghz", "intel", "atom"], "$3,000,000": ["$", "3,000,000"],
        "50% & more": ["50", "%", "&", "more"], "a, b": ["a", ",", "b"], "(cg 73)": ["(", "cg", "73", ")"],
        '"umbra" \'shade\'': ["``", "umbra", "''", "\'shade", "\'"], 'a"b': ["a", "''", "b"],
        "men's": ["men", "'s"], "don't": ["do", "n't"], "boys'": ["boys", "'"], "o'neill": ["o'neill"],
        "cannot": ["can", "not"], "'tis": ["'t", "is"], "wait...": ["wait", "..."], "a?!": ["a", "?", "!"],
        "a\u3000b\tc": ["a", "b", "c"], "'a": ["'", "a"], "37℃ 〈a〉": ["37℃", "〈a〉"], "end.)": ["end", ".", ")"],
    }
    assert {run: latin_words(run) for run in cases} == cases


def test_scores_average_over_questions_as_fractions():
    scores = mrc_scores(["北京大学", "上海", "1963"], [["北京"], ["上海"], ["1963年"]])
    assert scores["em"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert scores["f1_char"] == pytest.approx((2 / 3 + 1 + 8 / 9) / 3)
    assert mrc_scores([], []) == {"f1": 0.0, "em": 0.0, "f1_char": 0.0}
    with pytest.raises(ValueError):
        mrc_scores(["a"], [])


# ----------------------------------------------------------------------------- tokens -> characters

def test_pieces_split_at_space_cjk_and_punctuation():
    text = "由光荣和ω-force开发 in 1963年"
    assert [text[a:b] for a, b in split_pieces(text)] == \
        ["由", "光", "荣", "和", "ω", "-", "force", "开", "发", "in", "1963", "年"]


def test_every_token_knows_its_characters(tokenizer):
    text = "罗亚尔港号（USS Port Royal CG-73）unaffable Ⅻ号"
    ids, spans = tokenize_with_offsets(tokenizer, text)
    assert ids == tokenizer.encode(text)  # the same tokens as the whole text
    # Tokens are lowercased (us, ##s, port) but point at the original characters; WordPiece
    # parts get their own characters; an [UNK] stands for its whole piece.
    assert [text[a:b] for a, b in spans] == ["罗", "亚", "尔", "港", "号", "（", "US", "S", "Port", "Royal", "CG", "-",
                                              "73", "）", "u", "na", "ff", "able", "Ⅻ", "号"]
    assert tokenizer.convert_ids_to_tokens(ids[6:8] + ids[18:19]) == ["us", "##s", "[UNK]"]


def test_training_answers_map_back_to_their_exact_text(tokenizer):
    task = make_task(tokenizer, seq_length=512, doc_stride=128)
    data = task.read(DATA / "train.json", split="train", labels_num=None, skip_bad_rows=False)
    questions = data.info["questions"]
    assert len(questions) == 25
    located = set()
    for window in data.examples:
        if window.start:
            q = questions[window.question]
            first = q.spans[window.start - window.offset + window.first][0]
            last = q.spans[window.end - window.offset + window.first][1]
            assert q.context[first:last] == q.answers[0]
            located.add(window.question)
    assert located == set(range(25))


# ----------------------------------------------------------------------------- windows

def test_long_context_is_split_into_overlapping_windows(tokenizer, tmp_path):
    # 30 sentences of 5 tokens (第, N, 句, 话, 。): 150 context tokens; the answer is tokens 125..128.
    context = "".join(f"第{i}句话。" for i in range(30))
    answer = "第25句话"
    path = write(tmp_path / "one.json", squad((context, [("q1", "哪一句？", [(answer, context.index(answer))])])))
    task = make_task(tokenizer, seq_length=32, doc_stride=10)
    data = task.read(path, split="train", labels_num=None, skip_bad_rows=False)
    cls, sep = tokenizer.vocab.cls_id, tokenizer.vocab.sep_id
    query = tokenizer.encode("哪一句？")
    ids = tokenizer.encode(context)
    assert len(query) == 4 and len(ids) == 150
    room = 32 - 4 - 3  # 25 context tokens per window
    # Windows start every 10 tokens until one reaches the end (130 + 25 >= 150).
    assert [w.first for w in data.examples] == list(range(0, 131, 10))
    for window in data.examples:
        part = ids[window.first:window.first + room]
        assert window.src == [cls, *query, sep, *part, sep] and len(window.src) <= 32
        assert window.seg == [1] * 6 + [2] * (len(part) + 1)
        assert window.offset == 6 and window.question == 0
    # Only windows holding all of tokens 125..128 point at the answer; the rest at [CLS].
    holding = [w for w in data.examples if w.start]
    assert [w.first for w in holding] == [110, 120]
    for window in holding:
        assert window.src[window.start:window.end + 1] == tokenizer.encode(answer)
    assert all(w.end == 0 for w in data.examples if not w.start)


def test_stride_longer_than_a_window_skips_no_text(tokenizer, tmp_path):
    context = "一二三四五六七八九十" * 10
    path = write(tmp_path / "one.json", squad((context, [("q1", "问", [("一二", 0)])])))
    data = make_task(tokenizer, seq_length=16, doc_stride=500).read(path, split="infer", labels_num=None,
                                                                    skip_bad_rows=False)
    room = 16 - 3 - 1
    assert [w.first for w in data.examples] == list(range(0, 100, room))


def test_misplaced_answer_start_moves_to_the_nearest_occurrence(tokenizer, tmp_path):
    context = "北京是首都。北京大学在北京。"
    path = write(tmp_path / "one.json", squad((context, [("q1", "哪里？", [("北京大学", 3)])])))
    data = make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=False)
    window = data.examples[0]
    assert window.start - window.offset == 6 and window.end - window.offset == 9


# ----------------------------------------------------------------------------- decoding

def test_best_span_respects_order_length_and_context():
    start = torch.full((2, 16), -100.0)
    end = torch.full((2, 16), -100.0)
    start[:, 1], end[:, 1] = 50.0, 50.0  # in the question part of row 0
    start[:, 13], end[:, 3] = 30.0, 30.0  # only as end-before-start
    start[:, 5], end[:, 9] = 5.0, 5.5  # (5, 9): 10.5, 5 tokens
    start[:, 6], end[:, 7] = 4.0, 4.0  # (6, 7): 8; (5, 7): 9, 3 tokens; (6, 9): 9.5, 4 tokens
    ctx_start, ctx_end = torch.tensor([3, 1]), torch.tensor([14, 14])

    def best(max_length):
        return best_spans(start, end, ctx_start, ctx_end, max_length).tolist()

    assert best(5)[0] == [5.0, 9.0, 10.5]
    assert best(30)[0] == [5.0, 9.0, 10.5]
    assert best(4)[0] == [6.0, 9.0, 9.5]
    assert best(3)[0] == [5.0, 7.0, 9.0]
    assert best(5)[1] == [1.0, 1.0, 100.0]  # row 1's context starts at 1


def test_answer_is_the_best_span_over_all_windows_sliced_from_the_context(tokenizer, tmp_path):
    context = "".join(f"第{i}句话。" for i in range(30))
    path = write(tmp_path / "one.json", squad((context, [("q1", "哪一句？", [("第25句话", context.index("第25句话"))])]),
                                              ("苹果和香蕉", [("q2", "水果？", [("香蕉", 3)])])))
    task = make_task(tokenizer, seq_length=32, doc_stride=10)
    data = task.read(path, split="dev", labels_num=None, skip_bad_rows=False)
    questions = data.info["questions"]
    rows = []
    for n, window in enumerate(data.examples):
        if window.question == 1:  # q2: tokens 3..4 of 苹果和香蕉
            rows.append([window.offset + 3, window.offset + 4, 1.0])
        elif n == 3:  # the winning window of q1: its 2nd..5th context tokens
            rows.append([window.offset + 1, window.offset + 4, 5.0])
        else:
            rows.append([window.offset, window.offset, 2.0])
    outputs = [torch.tensor(rows[:4]), torch.tensor(rows[4:])]
    # Window 3 starts at context token 30 (第6句话。); tokens 31..34 are "6句话。".
    assert data.examples[3].first == 30 and len(questions) == 2
    assert task.answers(outputs, data) == ["6句话。", "香蕉"]
    # q1: "6句话" ([6 句 话], 。 dropped) vs "第25句话" ([第 25 句 话]): LCS 2 (句话), P = 2/3, R = 2/4,
    # F1 = 4/7; per character 句话 of 3 and 5, F1 = 1/2.  q2 exact.
    assert task.evaluate(outputs, data, 2) == pytest.approx({"f1": (4 / 7 + 1) / 2, "em": 0.5, "f1_char": 0.75})


# ----------------------------------------------------------------------------- fine-tune and infer

def finetune_cfg(out, *extra, train=DATA / "train.json", dev=DATA / "dev.json", test=DATA / "dev.json"):
    return compose_config(["stage=finetune", "task=cmrc", f"finetune.train_path={train}", f"finetune.dev_path={dev}",
                           f"finetune.test_path={test}", f"output_model_path={out}", "size=tiny", *SMALL, *FAST,
                           *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmrc")
    return out, run_stage(finetune_cfg(out))


def test_finetune_writes_best_checkpoint_with_uer_head_and_scores(trained):
    out, score = trained
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    assert records[0]["f1"] == score and 0.0 <= score <= 1.0 and 0.0 <= records[0]["em"] <= records[0]["f1"]
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["task"]["type"] == "cmrc" and payload["task_info"]["labels_num"] == 2
    assert payload["model"]["output_layer.weight"].shape == (2, 32)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"cmrc_loss", "cmrc_acc"} <= set(metrics[-1])


def test_infer_writes_one_answer_per_question_from_its_context(trained, tmp_path):
    out, _ = trained
    pred = tmp_path / "pred.json"
    # The test file's answers are placeholders (answer_start -1): infer ignores them.
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={DATA / 'test.json'}", f"infer.prediction_path={pred}",
                              "hardware.num_threads=1"]))
    answers = json.loads(pred.read_text(encoding="utf-8"))
    doc = json.loads((DATA / "test.json").read_text(encoding="utf-8"))
    contexts = {qa["id"]: p["context"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"]}
    assert list(answers) == list(contexts) and len(answers) == 5
    for qid, text in answers.items():
        assert text and text in contexts[qid]


def test_documented_commands_via_main(trained, tmp_path):
    out, _ = trained
    pred = tmp_path / "pred.json"
    # The documented inference in-process; main.py runs the refused one below (its one line and exit status).
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={DATA / 'dev.json'}", f"infer.prediction_path={pred}",
                              "hardware.num_threads=1"]))
    assert set(json.loads(pred.read_text(encoding="utf-8"))) == {"DEV_0_QUERY_0", "DEV_0_QUERY_1", "DEV_0_QUERY_2"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"paragraphs": [}\n]}', encoding="utf-8")
    proc = run_main(["stage=infer", f"infer.load_model_path={out / 'best.pt'}", f"infer.test_path={bad}",
                     f"infer.prediction_path={tmp_path / 'bad_pred.json'}"], tmp_path / "run_bad")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{bad}:2:19" in lines[0] and "not valid JSON" in lines[0], proc.stderr
    assert not (tmp_path / "bad_pred.json").exists()


# ----------------------------------------------------------------------------- bad input

def good_doc():
    return json.loads((DATA / "dev.json").read_text(encoding="utf-8"))


def breaks(doc, kind):
    paragraph = doc["data"][0]["paragraphs"][0]
    qa = paragraph["qas"][1]
    if kind == "context":
        del paragraph["context"]
    elif kind == "qas":
        paragraph["qas"] = "none"
    elif kind == "question":
        del qa["question"]
    elif kind == "answers":
        qa["answers"] = []
    elif kind == "answer_text":
        qa["answers"][0]["text"] = "不在文中的答案"
    elif kind == "answer_start":
        del qa["answers"][0]["answer_start"]
    elif kind == "id":
        qa["id"] = paragraph["qas"][0]["id"]
    return doc


BAD = {  # kind: (key named in the message, words of the problem)
    "context": ("data[0].paragraphs[0]", '"context"'),
    "qas": ("data[0].paragraphs[0]", '"qas"'),
    "question": ("data[0].paragraphs[0].qas[1] (id DEV_0_QUERY_1)", '"question"'),
    "answers": ("data[0].paragraphs[0].qas[1] (id DEV_0_QUERY_1)", '"answers"'),
    "answer_text": ("qas[1] (id DEV_0_QUERY_1).answers[0]", "does not occur in the context"),
    "answer_start": ("qas[1] (id DEV_0_QUERY_1).answers[0]", '"answer_start"'),
    "id": ("data[0].paragraphs[0].qas[1] (id DEV_0_QUERY_0)", "repeats"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_training_item_names_file_and_key(tokenizer, tmp_path, kind):
    key, problem = BAD[kind]
    path = write(tmp_path / "train.json", breaks(good_doc(), kind))
    with pytest.raises(UerError) as exc:
        make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=False)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") and key in message and problem in message, message
    assert "finetune.skip_bad_rows=true" in message


def test_dev_needs_answers_but_not_answer_start(tokenizer, tmp_path):
    doc = good_doc()
    for qa in doc["data"][0]["paragraphs"][0]["qas"]:
        for answer in qa["answers"]:
            del answer["answer_start"]
    path = write(tmp_path / "dev.json", doc)
    data = make_task(tokenizer).read(path, split="dev", labels_num=None, skip_bad_rows=False)
    assert len(data.info["questions"]) == 3
    path = write(tmp_path / "nolabel.json", breaks(good_doc(), "answers"))
    data = make_task(tokenizer).read(path, split="infer", labels_num=None, skip_bad_rows=False)
    assert len(data.info["questions"]) == 3
    with pytest.raises(UerError, match="stage=infer"):
        make_task(tokenizer).read(path, split="test", labels_num=None, skip_bad_rows=False)


def test_invalid_json_and_wrong_shape(tokenizer, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n {"paragraphs": [1, 2,]}]}', encoding="utf-8")
    with pytest.raises(UerError, match=rf"^{re.escape(str(path))}:2:23: not valid JSON"):
        make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=True)
    path.write_text('[1, 2]', encoding="utf-8")
    with pytest.raises(UerError, match='no "data" list'):
        make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=True)
    path.write_bytes(b'{"data": []}\n\xff')
    with pytest.raises(UerError, match=rf"^{re.escape(str(path))}:2: not valid UTF-8"):
        make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=False)
    with pytest.raises(UerError, match="not found"):
        make_task(tokenizer).read(tmp_path / "absent.json", split="train", labels_num=None, skip_bad_rows=False)


def test_skip_bad_rows_skips_and_counts(tokenizer, tmp_path, caplog):
    doc = breaks(good_doc(), "question")
    doc["data"][0]["paragraphs"][0]["qas"][2]["answers"] = "x"
    path = write(tmp_path / "train.json", doc)
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        data = make_task(tokenizer).read(path, split="train", labels_num=None, skip_bad_rows=True)
    assert data.skipped == 2 and [q.id for q in data.info["questions"]] == ["DEV_0_QUERY_0"]
    assert f"{path}: skipped 2 bad questions" in caplog.text


def test_bad_train_file_stops_finetune_with_one_line_and_no_checkpoint(tmp_path, capsys):
    train = write(tmp_path / "train.json", breaks(good_doc(), "answer_text"))
    with pytest.raises(SystemExit) as exc:
        run_stage(finetune_cfg(tmp_path / "out", train=train))
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(train) in lines[0] and "DEV_0_QUERY_1" in lines[0]
    assert not (tmp_path / "out" / "best.pt").exists()


def test_bad_options(tokenizer):
    with pytest.raises(UerError, match="task.labels_num is a key of task=classifier .*, not of task=cmrc"):
        preflight(["task=cmrc", "task.labels_num=3"], multirun=False)
    with pytest.raises(UerError, match="task.doc_stride=0"):
        make_task(tokenizer, doc_stride=0)
    with pytest.raises(UerError, match="seq_length=4"):
        make_task(tokenizer, seq_length=4)


def test_finetune_learns_an_easily_found_answer(tmp_path):
    """Labels, loss and decoding agree: a span marked by its own characters is learnt exactly."""
    rng = random.Random(0)
    chars = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈"

    def make(n, prefix):
        paragraphs = []
        for i in range(n):
            body = "".join(rng.choice(chars) for _ in range(40))
            at = rng.randrange(40)
            context = body[:at] + "龙虎" + body[at:]
            paragraphs.append((context, [(f"{prefix}{i}", "什么？", [("龙虎", at)])]))
        return squad(*paragraphs)

    train, dev = write(tmp_path / "train.json", make(240, "T")), write(tmp_path / "dev.json", make(24, "D"))
    score = run_stage(finetune_cfg(tmp_path / "out", "finetune.epochs_num=6", "finetune.learning_rate=1e-3",
                                   "lr_scheduler.warmup=0.05", train=train, dev=dev, test=dev))
    assert score == 1.0
