"""tool=convert with task heads: fine-tuned classifier (text, pair), NER and CMRC models to Hugging Face
``BertFor*`` directories and back; HF task models (random, from_config) in; refusals.

What is compared with what:

* classifier: ``pipeline("text-classification")`` on the exported directory, fed the test rows as text
  (so the exported tokenizer is compared too), gives the labels ``stage=infer`` writes, and its raw
  scores (``function_to_apply="none"``) are the uer logits within 1e-5.
* NER: the token-classification pipeline appends ``[SEP]`` to every input, which uer's NER input
  (``[CLS]`` + one id per character) has not, so the pipeline's logits are another model's; the exported
  model is compared on uer's own input ids: logits within 1e-5, and its argmax through config.json's
  ``id2label`` is the tag sequence ``stage=infer`` writes.
* CMRC: transformers 5 has no question-answering pipeline any more; the exported model runs on the
  exported tokenizer's ``tokenizer(question, context)`` (one window: the contexts fit), its start/end
  logits are uer's within 1e-5, and the best span decoded from them (start <= end, at most
  ``max_answer_length`` tokens, in the context; as that pipeline decoded) cut from the context by the
  tokenizer's offsets is the answer ``stage=infer`` writes.

Every tensor comes back bit-identical, the segment embedding's padding row (uer's row 0, which a Hugging Face
model holds as a third token type) too.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer, BertConfig, pipeline)

from uer.app import run_stage
from uer.io.checkpoint import atomic_torch_save, load_checkpoint, sealed
from uer.models import build_backbone
from uer.stages.infer import load_fine_tuned
from tool_testing import no_temp_files, run_tool, task_outputs, tool_error, write_vocab
from uer_testing import ROOT, SMALL, compose_config, slice_file

DATA = ROOT / "datasets" / "test_data"
POSITIONS = 512  # the tiny models keep 512 positions: every bundled test row used here fits
FAST = ["size=tiny", *SMALL, "hardware.num_threads=1",
        "finetune.seq_length=32", "finetune.batch_size=8", "finetune.max_steps=2", "finetune.report_steps=100"]

transformers.logging.set_verbosity_error()


# ----------------------------------------------------------------------------- fine-tuned models

def finetune(out, task, train, dev, *extra):
    run_stage(compose_config(["stage=finetune", f"task={task}", f"finetune.train_path={train}",
                              f"finetune.dev_path={dev}", f"output_model_path={out}", *FAST, *extra]))
    return out / "best.pt"


def convert(source, fmt_in, target, fmt_out, *extra):
    run_tool("convert", f"tool.input_format={fmt_in}", f"tool.input_path={source}", f"tool.output_format={fmt_out}",
             f"tool.output_path={target}", *extra)
    return target


def round_trip(checkpoint, directory):
    """Export ``checkpoint`` to ``directory/hf`` and import that back as ``directory/back.pt``."""
    hf = convert(checkpoint, "uer_ckpt", directory / "hf", "hf")
    back = convert(hf, "hf", directory / "back.pt", "uer_ckpt", f"tokenizer.vocab_path={hf / 'vocab.txt'}")
    return hf, back


def tsv_task_model(tmp_path_factory, task, folder, test_file, test_rows):
    """(directory, fine-tuned best.pt, test file, HF export, imported back) of a TSV task on a bundled data slice."""
    tmp = tmp_path_factory.mktemp(folder)
    source = DATA / folder
    train = slice_file(source / "train.tsv", tmp / "train.tsv", 32)
    dev = slice_file(source / "dev.tsv", tmp / "dev.tsv", 8)
    test = slice_file(source / test_file, tmp / "test.tsv", test_rows)
    model = finetune(tmp / "model", task, train, dev)
    return (tmp, model, test, *round_trip(model, tmp))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return tsv_task_model(tmp_path_factory, "classifier", "book_review", "test_nolabel.tsv", 12)


@pytest.fixture(scope="module")
def pair_classifier(tmp_path_factory):
    return tsv_task_model(tmp_path_factory, "classifier", "dbqa", "test.tsv", 12)  # text_a, text_b pairs


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    return tsv_task_model(tmp_path_factory, "ner", "msra_ner", "test_nolabel.tsv", 8)


@pytest.fixture(scope="module")
def cmrc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmrc")
    model = finetune(tmp / "model", "cmrc", DATA / "cmrc" / "train.json", DATA / "cmrc" / "dev.json")
    return (tmp, model, DATA / "cmrc" / "dev.json", *round_trip(model, tmp))


def infer(checkpoint, test, prediction):
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={checkpoint}", f"infer.test_path={test}",
                              f"infer.prediction_path={prediction}", f"infer.seq_length={POSITIONS}",
                              "hardware.num_threads=1"]))
    return prediction.read_text(encoding="utf-8")


def uer_model(checkpoint, seq_length=POSITIONS):
    """(task, model in eval mode) of a fine-tuned checkpoint, as stage=infer builds them."""
    loaded = load_fine_tuned(compose_config(["stage=infer", f"infer.load_model_path={checkpoint}",
                                             f"infer.seq_length={seq_length}", "hardware.num_threads=1"]), "infer")
    config, task = loaded.payload["config"], loaded.task
    backbone = build_backbone(config["embedding"], config["encoder"], len(task.tokenizer.vocab),
                              tokens=task.tokenizer.vocab.tokens)
    model = task.build_model(backbone, task.info["labels_num"])
    model.load_state_dict(loaded.payload["model"])
    return task, model.eval()


def hf_inputs(batch):
    """uer's (src, seg) as BERT inputs: segments 1/2 are token types 0/1."""
    return {"input_ids": batch["src"], "token_type_ids": (batch["seg"] - 1).clamp(min=0),
            "attention_mask": (batch["seg"] > 0).long()}


def assert_round_trip_exact(original, back):
    ours, theirs = load_checkpoint(original)["model"], load_checkpoint(back)["model"]
    assert set(ours) == set(theirs)
    for key, tensor in ours.items():  # the segment embedding's padding row too (a third token type in HF)
        assert torch.equal(theirs[key], tensor), key


def hf_config(directory):
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- classifier


@pytest.mark.parametrize("fixture", ["classifier", "pair_classifier"])
def test_classifier_exports_to_sequence_classification_with_the_labels_infer_gives(request, fixture):
    tmp, model, test, hf, back = request.getfixturevalue(fixture)
    config = hf_config(hf)
    assert config["architectures"] == ["BertForSequenceClassification"] and config["num_labels"] == 2
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}
    lines = infer(model, test, tmp / "pred.tsv").splitlines()
    labels = [line.split("\t")[0] for line in lines[1:]]

    task, ours = uer_model(model)
    data = task.read(test, split="infer", labels_num=None, skip_bad_rows=False)
    with torch.no_grad():
        logits = torch.cat([ours.predict(task.collate([example])) for example in data.examples])
    rows = [line.split("\t") for line in test.read_text(encoding="utf-8").splitlines()]
    header, rows = rows[0], rows[1:]
    texts = [dict(zip(header, row)) for row in rows]
    inputs = [{"text": row["text_a"], "text_pair": row["text_b"]} if "text_b" in row else row["text_a"]
              for row in texts]
    classify = pipeline("text-classification", model=str(hf), device="cpu")
    assert [result["label"] for result in classify(inputs)] == labels
    scores = classify(inputs, top_k=None, function_to_apply="none")
    theirs = torch.tensor([[next(s["score"] for s in row if s["label"] == str(i)) for i in range(2)]
                           for row in scores])
    assert torch.allclose(theirs, logits, atol=1e-5, rtol=0)

    assert_round_trip_exact(model, back)
    assert infer(back, test, tmp / "back.tsv").splitlines() == lines


# ----------------------------------------------------------------------------- NER

def test_ner_exports_to_token_classification_with_its_tags(ner):
    tmp, model, test, hf, back = ner
    task, ours = uer_model(model)
    tags = list(task.label2id)
    config = hf_config(hf)
    assert config["architectures"] == ["BertForTokenClassification"] and config["num_labels"] == len(tags)
    assert config["id2label"] == {str(i): tag for i, tag in enumerate(tags)}
    lines = infer(model, test, tmp / "pred.tsv").splitlines()[1:]

    exported = AutoModelForTokenClassification.from_pretrained(hf).eval()
    data = task.read(test, split="infer", labels_num=None, skip_bad_rows=False)
    for example, line in zip(data.examples, lines):
        batch = task.collate([example])
        with torch.no_grad():
            mine, theirs = ours.logits(batch), exported(**hf_inputs(batch)).logits
        assert torch.allclose(theirs, mine, atol=1e-5, rtol=0)
        predicted = [exported.config.id2label[i] for i in theirs[0, 1:].argmax(dim=-1).tolist()]
        assert " ".join(predicted) == line

    assert_round_trip_exact(model, back)
    assert load_checkpoint(back)["task_info"]["label2id"] == task.label2id
    copy = convert(model, "uer_ckpt", tmp / "copy.pt", "uer_ckpt")  # uer_ckpt -> uer_ckpt keeps the tag set too
    assert load_checkpoint(copy)["task_info"] == load_checkpoint(model)["task_info"]
    assert infer(back, test, tmp / "back.tsv").splitlines()[1:] == lines


# ----------------------------------------------------------------------------- CMRC

def best_answer(start, end, offsets, in_context, context, max_length):
    """The span maximising start + end logit among context tokens, start <= end < start + max_length."""
    scores = start[:, None] + end[None, :]
    position = torch.arange(len(start))
    allowed = ((position[None, :] >= position[:, None]) & (position[None, :] < position[:, None] + max_length)
               & in_context[:, None] & in_context[None, :])
    first, last = divmod(int(scores.masked_fill(~allowed, float("-inf")).argmax()), len(start))
    return context[offsets[first][0]:offsets[last][1]]


def test_cmrc_exports_to_question_answering_with_the_answers_infer_gives(cmrc):
    tmp, model, test, hf, back = cmrc
    assert hf_config(hf)["architectures"] == ["BertForQuestionAnswering"] and hf_config(hf)["num_labels"] == 2
    answers = json.loads(infer(model, test, tmp / "pred.json"))
    task, ours = uer_model(model)
    tokenizer, exported = AutoTokenizer.from_pretrained(hf), AutoModelForQuestionAnswering.from_pretrained(hf).eval()
    doc = json.loads(test.read_text(encoding="utf-8"))
    questions = [(qa, p["context"]) for article in doc["data"] for p in article["paragraphs"] for qa in p["qas"]]
    data = task.read(test, split="infer", labels_num=None, skip_bad_rows=False)
    assert len(data.examples) == len(questions)  # one window each: the exported tokenizer sees the same input
    for (qa, context), window in zip(questions, data.examples):
        encoded = tokenizer(qa["question"], context, return_offsets_mapping=True, return_tensors="pt")
        assert encoded["input_ids"][0].tolist() == window.src
        with torch.no_grad():
            output = exported(**{key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask")})
            start, end = ours.logits(task.collate([window]))
        assert torch.allclose(output.start_logits, start, atol=1e-5, rtol=0)
        assert torch.allclose(output.end_logits, end, atol=1e-5, rtol=0)
        in_context = torch.tensor([sequence == 1 for sequence in encoded.sequence_ids(0)])
        found = best_answer(output.start_logits[0], output.end_logits[0], encoded["offset_mapping"][0].tolist(),
                            in_context, context, task.cfg.max_answer_length)
        assert found == answers[qa["id"]]

    assert_round_trip_exact(model, back)
    assert json.loads(infer(back, test, tmp / "back.json")) == answers


# ----------------------------------------------------------------------------- HF task models in

TINY = dict(vocab_size=35, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=24)
HF_TASKS = {
    "classifier": (AutoModelForSequenceClassification, {"id2label": {0: "negative", 1: "neutral", 2: "positive"}}),
    "ner": (AutoModelForTokenClassification, {"id2label": {0: "O", 1: "B-LOC", 2: "I-LOC"}}),
    "cmrc": (AutoModelForQuestionAnswering, {}),
}


def saved_hf_model(directory, task, seed=0):
    auto, labels = HF_TASKS[task]
    torch.manual_seed(seed)
    model = auto.from_config(BertConfig(**TINY, **labels)).eval()
    model.save_pretrained(directory)
    write_vocab(directory / "vocab.txt")
    return model


def hf_outputs(task, model, src, seg):
    with torch.no_grad():
        output = model(**hf_inputs({"src": src, "seg": seg}))
    return torch.stack([output.start_logits, output.end_logits], dim=-1) if task == "cmrc" else output.logits


@pytest.mark.parametrize("task", sorted(HF_TASKS))
def test_random_hf_task_model_imports_exactly_and_exports_back(tmp_path, task):
    theirs = saved_hf_model(tmp_path / "hf", task)
    back = convert(tmp_path / "hf", "hf", tmp_path / "model.pt", "uer_ckpt",
                   "tokenizer=char", f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    payload = load_checkpoint(back)
    assert payload["config"]["task"]["type"] == task
    _, ours = uer_model(back, TINY["max_position_embeddings"])
    torch.manual_seed(1)
    src = torch.randint(5, TINY["vocab_size"], (3, 20))
    seg = torch.tensor([[1] * 8 + [2] * 12, [1] * 20, [1] * 5 + [2] * 10 + [0] * 5])
    mine, reference = task_outputs(task, ours, {"src": src, "seg": seg}), hf_outputs(task, theirs, src, seg)
    if task != "classifier":  # per token: padded positions' outputs mean nothing in either model
        mine, reference = mine[seg > 0], reference[seg > 0]
    assert torch.allclose(mine, reference, atol=1e-5, rtol=0)

    again = convert(back, "uer_ckpt", tmp_path / "again", "hf")
    direct = convert(tmp_path / "hf" / "model.safetensors", "hf", tmp_path / "direct.bin", "hf")  # hf -> hf too
    assert set(torch.load(direct, weights_only=True)) == set(theirs.state_dict())
    reloaded, info = type(theirs).from_pretrained(again, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.config.id2label == theirs.config.id2label
    for key, tensor in theirs.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], tensor), key


def test_named_classes_are_kept_in_the_checkpoint(tmp_path):
    saved_hf_model(tmp_path / "hf", "classifier")
    back = convert(tmp_path / "hf", "hf", tmp_path / "model.pt", "uer_ckpt", "tokenizer=char",
                   f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    payload = load_checkpoint(back)
    assert payload["task_info"] == {"labels_num": 3, "id2label": {"0": "negative", "1": "neutral", "2": "positive"}}
    assert payload["config"]["task"]["pooling"] == "first" and payload["config"]["finetune"]["seq_length"] == 24


def test_weights_file_output_gets_the_head_config_beside_it(tmp_path):
    theirs = saved_hf_model(tmp_path / "hf", "ner")
    model = convert(tmp_path / "hf", "hf", tmp_path / "model.pt", "uer_ckpt", "tokenizer=char",
                    f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    (tmp_path / "weights").mkdir()
    convert(model, "uer_ckpt", tmp_path / "weights" / "model.safetensors", "hf")
    config = hf_config(tmp_path / "weights")
    assert config["architectures"] == ["BertForTokenClassification"] and config["id2label"]["1"] == "B-LOC"
    reloaded, info = AutoModelForTokenClassification.from_pretrained(tmp_path / "weights", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert torch.equal(reloaded.classifier.weight, theirs.classifier.weight)


# ----------------------------------------------------------------------------- refusals

def edit_config(directory, **changes):
    config = hf_config(directory)
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_classifier_config_without_classifier_weights_is_refused(capsys, tmp_path):
    saved_hf_model(tmp_path / "hf", "ner")  # a token classifier's weights: no pooler
    edit_config(tmp_path / "hf", architectures=["BertForSequenceClassification"], id2label={"0": "0", "1": "1"})
    line = tool_error(capsys, "convert", "tool.input_format=hf", f"tool.input_path={tmp_path / 'hf'}",
                      "tool.output_format=uer_ckpt", f"tool.output_path={tmp_path / 'model.pt'}", "tokenizer=char",
                      f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    assert "says BertForSequenceClassification" in line and "has no bert.pooler.dense.weight" in line
    assert not (tmp_path / "model.pt").exists() and no_temp_files(tmp_path)


def test_labels_that_disagree_with_the_weights_are_refused(capsys, tmp_path):
    saved_hf_model(tmp_path / "hf", "classifier")
    edit_config(tmp_path / "hf", id2label={"0": "negative", "1": "positive"}, label2id={"negative": 0, "positive": 1})
    line = tool_error(capsys, "convert", "tool.input_format=hf", f"tool.input_path={tmp_path / 'hf'}",
                      "tool.output_format=uer_ckpt", f"tool.output_path={tmp_path / 'model.pt'}", "tokenizer=char",
                      f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    assert "with 2 labels" in line and "classifier.weight has 3 rows" in line
    assert not (tmp_path / "model.pt").exists()


def test_head_weights_of_another_shape_are_refused(capsys, tmp_path):
    saved_hf_model(tmp_path / "hf", "classifier")
    weights = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(weights))
    state["bert.pooler.dense.weight"] = state["bert.pooler.dense.weight"][:8]
    save_file(state, str(weights), metadata={"format": "pt"})
    line = tool_error(capsys, "convert", "tool.input_format=hf", f"tool.input_path={tmp_path / 'hf'}",
                      "tool.output_format=uer_ckpt", f"tool.output_path={tmp_path / 'model.pt'}", "tokenizer=char",
                      f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    assert "bert.pooler.dense.weight has shape (8, 16)" in line and "(16, 16)" in line
    assert not (tmp_path / "model.pt").exists()


def test_ner_labels_that_are_not_tags_are_refused(capsys, tmp_path):
    saved_hf_model(tmp_path / "hf", "ner")
    edit_config(tmp_path / "hf", id2label={"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"})
    line = tool_error(capsys, "convert", "tool.input_format=hf", f"tool.input_path={tmp_path / 'hf'}",
                      "tool.output_format=uer_ckpt", f"tool.output_path={tmp_path / 'model.pt'}", "tokenizer=char",
                      f"tokenizer.vocab_path={tmp_path / 'hf' / 'vocab.txt'}")
    assert "BIO tags" in line and "LABEL_0" in line and not (tmp_path / "model.pt").exists()


def rewritten(checkpoint, path, **task):
    payload = load_checkpoint(checkpoint)
    payload["config"]["task"].update(task)
    atomic_torch_save(sealed(payload), path)
    return path


@pytest.mark.parametrize("task, fragments", [
    ({"pooling": "mean"}, ("task.pooling=mean", "BertForSequenceClassification", "task.pooling=first")),
    ({"type": "c3"}, ("task=c3", "no Hugging Face head", "BertForMultipleChoice",
                      "classifier -> BertForSequenceClassification")),
    ({"type": "multilabel"}, ("task=multilabel", "problem_type=multi_label_classification", "does not write")),
    ({"type": "regression"}, ("task=regression", "problem_type=regression", "does not write")),
    ({"type": "ner", "crf": True}, ("task.crf=true", "Viterbi", "BertForTokenClassification", "task.crf=false")),
])
def test_heads_without_a_hugging_face_place_are_refused(capsys, tmp_path, classifier, task, fragments):
    source = rewritten(classifier[1], tmp_path / "model.pt", **task)
    line = tool_error(capsys, "convert", "tool.input_format=uer_ckpt", f"tool.input_path={source}",
                      "tool.output_format=hf", f"tool.output_path={tmp_path / 'hf'}")
    assert all(fragment in line for fragment in fragments), line
    assert not (tmp_path / "hf").exists()
