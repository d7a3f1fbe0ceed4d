"""C3 multiple choice: input layout, empty choice slots, fine-tune + infer, bad input."""

import json
import logging
import random
import re

import pytest
import torch

from uer.cli import preflight
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.models import build_backbone
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer.tasks import make_task as new_task
from uer.tasks.c3 import MultipleChoiceModel
from uer_testing import ROOT, SMALL, compose_config, error_lines, run_main

DATA = ROOT / "datasets" / "c3"
FAST = ["hardware.num_threads=1", "finetune.seq_length=64", "finetune.batch_size=8", "finetune.epochs_num=1",
        "finetune.report_steps=100"]


def write(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """C3 has no train split: the first 24 dev items train, the next 12 are dev/test; 10 test items to infer."""
    tmp = tmp_path_factory.mktemp("c3")
    dev = json.loads((DATA / "dev.json").read_text(encoding="utf-8"))
    test = json.loads((DATA / "test.json").read_text(encoding="utf-8"))
    return {"train": write(tmp / "train.json", dev[:24]), "dev": write(tmp / "dev.json", dev[24:36]),
            "infer": write(tmp / "infer.json", test[:10])}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(compose_config([]).tokenizer)


def make_task(tokenizer, seq_length=64, **cfg):
    return new_task({"type": "c3", "max_choices_num": 4, "pooling": "first", **cfg},
                          tokenizer, seq_length)


def read(task, path, split="train", skip=False):
    return task.read(path, split=split, labels_num=None, skip_bad_rows=skip)


ITEM = [["男：你好。", "女：你好，请坐。"], [{"question": "他们在哪儿？", "choice": ["家里", "学校", "公司"], "answer": "学校"}],
        "1-1"]


# ----------------------------------------------------------------------------- inputs

def test_each_choice_is_cls_choice_sep_question_sep_dialogue_sep(tokenizer, tmp_path):
    path = write(tmp_path / "one.json", [ITEM])
    example = read(make_task(tokenizer), path).examples[0]
    cls, sep = tokenizer.vocab.cls_id, tokenizer.vocab.sep_id
    question, dialogue = tokenizer.encode("他们在哪儿？"), tokenizer.encode("男：你好。\n女：你好，请坐。")
    assert example.label == 1 and example.choices == ["家里", "学校", "公司"] and example.id == "1-1-0"
    assert len(example.src) == 3  # no input for the empty 4th slot
    for choice, src, seg in zip(example.choices, example.src, example.seg):
        first = [cls, *tokenizer.encode(choice), sep, *question, sep]
        assert src == first + dialogue + [sep]
        assert seg == [1] * len(first) + [2] * (len(dialogue) + 1)


def test_long_inputs_lose_the_end_of_the_dialogue_first(tokenizer, tmp_path):
    item = [["一二三四五六七八九十" * 5], [{"question": "问题", "choice": ["甲", "乙"], "answer": "甲"}]]
    example = read(make_task(tokenizer, seq_length=12), write(tmp_path / "one.json", [item])).examples[0]
    cls, sep = tokenizer.vocab.cls_id, tokenizer.vocab.sep_id
    assert example.src[0] == [cls, *tokenizer.encode("甲"), sep, *tokenizer.encode("问题"), sep,
                              *tokenizer.encode("一二三四五"), sep]
    assert all(len(src) == 12 for src in example.src)
    # A choice longer than the whole input keeps [CLS], three [SEP]s and as much choice as fits.
    item[1][0]["choice"][1] = "长" * 20
    src = read(make_task(tokenizer, seq_length=12), write(tmp_path / "two.json", [item])).examples[0].src[1]
    assert src == [cls, *tokenizer.encode("长" * 8), sep, sep, sep]


def test_empty_choice_slots_get_minus_infinity_and_padding_changes_nothing(tokenizer, tmp_path):
    items = [ITEM, [["女：明天见。"], [{"question": "什么时候见？", "choice": ["今天", "明天", "后天", "不见"],
                                        "answer": "明天"}]]]
    task = make_task(tokenizer)
    examples = read(task, write(tmp_path / "two.json", items)).examples
    batch = task.collate(examples)
    assert batch["src"].shape[0] == 7 and batch["slot"].tolist() == [0, 1, 2, 4, 5, 6, 7]
    assert batch["label"].tolist() == [1, 1]
    cfg = compose_config([*SMALL])
    torch.manual_seed(0)
    model = MultipleChoiceModel(build_backbone(cfg.embedding, cfg.encoder, len(tokenizer.vocab)), 4, "first")
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert {"c3_loss", "c3_acc"} == set(out.stats)
    model.eval()
    with torch.no_grad():
        logits = model.predict(batch)
        alone = model.predict(task.collate(examples[:1]))
    assert logits.shape == (2, 4) and logits[0, 3] == float("-inf") and torch.isfinite(logits[0, :3]).all()
    assert torch.isfinite(logits[1]).all()
    torch.testing.assert_close(logits[0, :3], alone[0, :3], atol=1e-5, rtol=1e-5)
    assert task.evaluate([logits], read(task, tmp_path / "two.json"), 4)["acc"] in (0.0, 0.5, 1.0)


def test_accuracy_by_hand(tokenizer, data):
    task = make_task(tokenizer)
    dev = read(task, data["dev"], "dev")
    gold = [example.label for example in dev.examples]
    logits = torch.zeros(len(gold), 4)
    for row, label in enumerate(gold):
        logits[row, label if row % 3 else (label + 1) % len(dev.examples[row].choices)] = 1.0
    wrong = sum(1 for row in range(len(gold)) if row % 3 == 0)
    assert task.evaluate([logits[:5], logits[5:]], dev, 4) == pytest.approx({"acc": 1 - wrong / len(gold)})


# ----------------------------------------------------------------------------- fine-tune and infer

def finetune_cfg(data, out, *extra):
    return compose_config(["stage=finetune", "task=c3", f"finetune.train_path={data['train']}",
                           f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['dev']}",
                           f"output_model_path={out}", "size=tiny", *SMALL, *FAST, *extra])


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("c3model")
    return out, run_stage(finetune_cfg(data, out))


def test_finetune_writes_best_checkpoint_with_uer_head(trained):
    out, score = trained
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("dev", 1), ("test", 1)]
    assert records[0]["acc"] == score and 0.0 <= score <= 1.0
    payload = load_checkpoint(out / "best.pt")
    task = payload["config"]["task"]
    assert (task["type"], payload["task_info"]["labels_num"], task["max_choices_num"]) == ("c3", 4, 4)
    assert payload["model"]["output_layer.weight"].shape == (1, 32)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"c3_loss", "c3_acc"} <= set(metrics[-1])


def test_infer_writes_one_choice_per_question(trained, data, tmp_path):
    out, _ = trained
    pred = tmp_path / "pred.json"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={data['infer']}", f"infer.prediction_path={pred}",
                              "infer.output_prob=true", "hardware.num_threads=1"]))
    records = json.loads(pred.read_text(encoding="utf-8"))
    questions = [q for item in json.loads(data["infer"].read_text(encoding="utf-8")) for q in item[1]]
    assert len(records) == len(questions) > 10
    for record, question in zip(records, questions):
        assert record["id"] == question["id"]
        assert record["answer"] == question["choice"][record["index"]]
        assert len(record["prob"]) == len(question["choice"]) and sum(record["prob"]) == pytest.approx(1, abs=1e-4)
        assert record["prob"][record["index"]] == max(record["prob"])


def test_documented_commands_via_main(trained, data, tmp_path):
    out, _ = trained
    pred = tmp_path / "pred.json"
    # The documented inference in-process; main.py runs the refused one below (its one line and exit status).
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={data['dev']}", f"infer.prediction_path={pred}",
                              "hardware.num_threads=1"]))
    records = json.loads(pred.read_text(encoding="utf-8"))
    assert records[0]["id"].endswith("-0") and set(records[0]) == {"id", "index", "answer"}
    bad = write(tmp_path / "bad.json", [ITEM[:2] + ["x"], [ITEM[0], [{"question": "?", "choice": list("abcde")}]]])
    proc = run_main(["stage=infer", f"infer.load_model_path={out / 'best.pt'}", f"infer.test_path={bad}",
                     f"infer.prediction_path={tmp_path / 'bad_pred.json'}"], tmp_path / "run_bad")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and f"{bad}: item 1, question 0: 5 choices" in lines[0], proc.stderr
    assert "give at most 4 choices" in lines[0] and "skip_bad_rows" not in lines[0]
    assert not (tmp_path / "bad_pred.json").exists()


# ----------------------------------------------------------------------------- bad input

def broken(kind):
    item = json.loads(json.dumps(ITEM))
    question = item[1][0]
    if kind == "question":
        del question["question"]
    elif kind == "choice":
        del question["choice"]
    elif kind == "answer":
        del question["answer"]
    elif kind == "not_a_choice":
        question["answer"] = "医院"
    elif kind == "too_many":
        question["choice"] = ["一", "二", "三", "四", "五"]
    elif kind == "dialogue":
        item[0] = "男：你好。"
    elif kind == "item":
        item = {"dialogue": item[0]}
    return item


BAD = {
    "question": ("item 1 (id 1-1), question 0", 'no "question"'),
    "choice": ("item 1 (id 1-1), question 0", 'no "choice"'),
    "answer": ("item 1 (id 1-1), question 0", 'no "answer"'),
    "not_a_choice": ("item 1 (id 1-1), question 0", "the answer '医院' is not among its choices"),
    "too_many": ("item 1 (id 1-1), question 0", "task.max_choices_num=5"),
    "dialogue": ("item 1 (id 1-1)", "dialogue"),
    "item": ("item 1", "not a [dialogue, questions, id] list"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_item_names_file_and_item(tokenizer, tmp_path, kind):
    key, problem = BAD[kind]
    path = write(tmp_path / "train.json", [ITEM, broken(kind), ITEM])
    with pytest.raises(UerError) as exc:
        read(make_task(tokenizer), path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    assert problem in message and "finetune.skip_bad_rows=true" in message, message


def test_skip_bad_rows_skips_and_counts(tokenizer, tmp_path, caplog):
    path = write(tmp_path / "train.json", [ITEM, broken("not_a_choice"), broken("too_many"), ITEM])
    with caplog.at_level(logging.WARNING, logger="uer.tasks"):
        data = read(make_task(tokenizer), path, skip=True)
    assert len(data) == 2 and data.skipped == 2
    assert f"{path}: skipped 2 bad questions" in caplog.text


def test_unlabelled_files_go_to_infer(tokenizer, data):
    task = make_task(tokenizer)
    assert len(read(task, data["infer"], "infer")) > 10
    with pytest.raises(UerError, match=r"item 0, question 0: no \"answer\".*stage=infer"):
        read(task, data["infer"], "test")


def test_invalid_json_and_wrong_shape(tokenizer, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  [["a"], [{"question": "q" "choice": []}]]\n]', encoding="utf-8")
    with pytest.raises(UerError, match=rf"^{re.escape(str(path))}:2:29: not valid JSON"):
        read(make_task(tokenizer), path, skip=True)
    path.write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(UerError, match="the top level is not a list"):
        read(make_task(tokenizer), path)
    path.write_text('[]', encoding="utf-8")
    with pytest.raises(UerError, match="no usable questions"):
        read(make_task(tokenizer), path)


def test_bad_train_file_stops_finetune_with_one_line_and_no_checkpoint(data, tmp_path, capsys):
    train = write(tmp_path / "train.json", [ITEM, broken("not_a_choice")])
    with pytest.raises(SystemExit) as exc:
        run_stage(finetune_cfg({**data, "train": train}, tmp_path / "out"))
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{train}: item 1 (id 1-1), question 0" in lines[0]
    assert not (tmp_path / "out" / "best.pt").exists()


def test_bad_options(tokenizer):
    with pytest.raises(UerError, match="task.labels_num is a key of task=classifier .*, not of task=c3"):
        preflight(["task=c3", "task.labels_num=2"], multirun=False)
    with pytest.raises(UerError, match="task.max_choices_num=1"):
        make_task(tokenizer, max_choices_num=1)
    with pytest.raises(UerError, match="task.pooling"):
        make_task(tokenizer, pooling="sum")


def test_finetune_learns_an_easily_found_answer(data, tmp_path):
    """Slots, labels and loss agree: the choice holding a marker character is learnt, wherever it sits."""
    rng = random.Random(0)
    chars = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈"

    def make(n):
        items = []
        for i in range(n):
            choices = ["".join(rng.choice(chars) for _ in range(2)) for _ in range(rng.choice((2, 3, 4)))]
            answer = rng.randrange(len(choices))
            choices[answer] = "龙" + choices[answer][1:]
            dialogue = ["".join(rng.choice(chars) for _ in range(20))]
            items.append([dialogue, [{"question": "哪个？", "choice": choices, "answer": choices[answer]}], str(i)])
        return items

    files = {"train": write(tmp_path / "train.json", make(240)), "dev": write(tmp_path / "dev.json", make(24))}
    score = run_stage(finetune_cfg(files, tmp_path / "out", "finetune.epochs_num=4", "finetune.batch_size=16",
                                   "finetune.learning_rate=1e-3", "lr_scheduler.warmup=0.05"))
    assert score == 1.0
