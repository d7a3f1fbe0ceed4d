"""predict() batches examples by length and gives the outputs back in the input's order, for every task;
stage=infer and dev evaluation go through it."""

import json
import random

import pytest
import torch

from uer.io.checkpoint import load_checkpoint, sealed
from uer.models import build_backbone
from uer.app import run_stage
from uer.tasks import make_task, padded_cat, predict
from uer.tasks.classifier import ClassifierTask
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, compose_config

DATA = ROOT / "datasets" / "test_data"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(compose_config([]).tokenizer)


def model_for(task, labels_num):
    """A tiny model whose outputs differ clearly from example to example (BERT's initial
    weights give nearly the same output for every input, so a mix-up would hardly show)."""
    cfg = compose_config(["size=tiny", *SMALL])
    torch.manual_seed(0)
    model = task.build_model(build_backbone(cfg.embedding, cfg.encoder, len(task.tokenizer.vocab)), labels_num)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(std=0.3)
    return model


def both_orders(task, data, model, batch_size=4):
    """``predict`` by length and in file order; checks first that the two batch the examples differently."""
    lengths = [task.length(example) for example in data.examples]
    assert lengths != sorted(lengths, reverse=True), "the file is already longest first: nothing is tested"
    runs = [torch.cat(predict(model, task, data, batch_size=batch_size, device=CPU, precision="fp32", by_length=flag))
            for flag in (True, False)]
    assert len(runs[0]) == len(data.examples)
    return runs


def one_by_one(task, data, model):
    """Each example predicted alone: the reference for which row belongs to which example."""
    return [predict(model, task, type(data)(data.path, [example], info=data.info), batch_size=1, device=CPU,
                    precision="fp32")[0][0] for example in data.examples]


def assert_rows_in_order(task, data, model):
    bucketed, file_order = both_orders(task, data, model)
    torch.testing.assert_close(bucketed, file_order, atol=1e-5, rtol=1e-5)
    alone = one_by_one(task, data, model)
    torch.testing.assert_close(bucketed, torch.stack(alone), atol=1e-5, rtol=1e-5)
    assert len({tuple(row.tolist()) for row in alone}) > 1  # rows differ, so a permutation would show
    return bucketed, file_order


def classifier_like(name, tokenizer, path, labels_num=2, info=None):
    task = make_task({"type": name, "labels_num": labels_num, "pooling": "first", "soft_targets": False},
                     tokenizer, 48, info)
    data = task.read(path, split="dev", labels_num=labels_num, skip_bad_rows=False)
    return task, data


@pytest.mark.parametrize("name", ["classifier", "classifier_cv"])
def test_classifier_rows_keep_the_file_order(tokenizer, name):
    task, data = classifier_like(name, tokenizer, DATA / "book_review" / "dev.tsv")
    model = model_for(task, 2)
    bucketed, file_order = assert_rows_in_order(task, data, model)
    assert task.evaluate([bucketed], data, 2) == task.evaluate([file_order], data, 2)


def test_mt_classifier_every_head_keeps_the_file_order(tokenizer):
    task, data = classifier_like("mt_classifier", tokenizer, DATA / "chnsenticorp" / "dev.tsv",
                                 info={"labels_nums": [2, 3]})
    data.info["dataset"] = 0
    model = model_for(task, None)
    bucketed, file_order = assert_rows_in_order(task, data, model)
    assert bucketed.shape == (len(data), 5)
    assert task.evaluate([bucketed], data) == task.evaluate([file_order], data)


def test_dbqa_candidates_keep_their_questions(tokenizer, tmp_path):
    reviews = [line.split("\t")[1] for line in (DATA / "book_review" / "dev.tsv").read_text("utf-8").splitlines()[1:]]
    rng = random.Random(0)
    rows = [(f"q{rng.randrange(6)}", int(rng.random() < 0.3), review[:10], review[10:60]) for review in reviews]
    path = tmp_path / "dbqa.tsv"
    path.write_text("qid\tlabel\ttext_a\ttext_b\n" + "".join("\t".join(map(str, row)) + "\n" for row in rows),
                    encoding="utf-8")
    task, data = classifier_like("dbqa", tokenizer, path)
    model = model_for(task, 2)
    bucketed, file_order = assert_rows_in_order(task, data, model)
    assert task.evaluate([bucketed], data, 2) == pytest.approx(task.evaluate([file_order], data, 2), abs=1e-12)
    written = []
    for outputs in (bucketed, file_order):
        task.write_predictions(tmp_path / "pred.tsv", [outputs], data, output_logits=False, output_prob=False)
        written.append([line.split("\t")[::2] for line in (tmp_path / "pred.tsv").read_text("utf-8").splitlines()])
    assert written[0] == written[1] and [row[0] for row in written[0][1:]] == [row[0] for row in rows]


def test_ner_tags_stay_with_their_sentences(tokenizer):
    task = make_task({"type": "ner", "labels_num": None, "label2id_path": None}, tokenizer, 40)
    train = task.read(DATA / "msra_ner" / "train.tsv", split="train", labels_num=None, skip_bad_rows=False)
    data = task.read(DATA / "msra_ner" / "dev.tsv", split="dev", labels_num=None, skip_bad_rows=False)
    model = model_for(task, task.labels_num_from(train))
    bucketed, file_order = both_orders(task, data, model)
    # Per-token outputs: one row per sentence, padded to the widest; positions past a sentence mean nothing.
    assert bucketed.shape == file_order.shape == (len(data), max(len(example.src) for example in data.examples))
    tags = task.predicted_tags([bucketed], data)
    assert tags == task.predicted_tags([file_order], data)
    assert tags == [task.predicted_tags([row[None]], type(data)(data.path, [example]))[0]
                    for row, example in zip(one_by_one(task, data, model), data.examples)]
    assert [len(t) for t in tags] == [example.length for example in data.examples]
    assert len({" ".join(t) for t in tags}) > 1
    assert task.evaluate([bucketed], data, None) == task.evaluate([file_order], data, None)


def test_cmrc_windows_of_a_document_go_back_to_their_question(tokenizer):
    task = make_task({"type": "cmrc", "labels_num": None, "doc_stride": 16, "max_answer_length": 8},
                            tokenizer, 48)
    data = task.read(DATA / "cmrc" / "dev.json", split="dev", labels_num=None, skip_bad_rows=False)
    windows = [window.question for window in data.examples]
    assert len(set(windows)) < len(windows)  # some questions have several windows
    model = model_for(task, 2)
    bucketed, file_order = assert_rows_in_order(task, data, model)
    assert task.answers([bucketed], data) == task.answers([file_order], data)
    assert task.evaluate([bucketed], data, 2) == task.evaluate([file_order], data, 2)


def test_c3_choices_stay_with_their_question(tokenizer, tmp_path):
    task = make_task({"type": "c3", "labels_num": None, "max_choices_num": 4, "pooling": "first"},
                          tokenizer, 64)
    items = json.loads((ROOT / "datasets" / "c3" / "dev.json").read_text(encoding="utf-8"))[:12]
    path = tmp_path / "c3.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    data = task.read(path, split="dev", labels_num=None, skip_bad_rows=False)
    assert len({len(example.choices) for example in data.examples}) > 1  # empty choice slots occur
    model = model_for(task, 4)
    bucketed, file_order = assert_rows_in_order(task, data, model)
    assert task.length(data.examples[0]) == max(len(src) for src in data.examples[0].src)
    assert task.evaluate([bucketed], data, 4) == task.evaluate([file_order], data, 4)


def test_padded_cat_pads_every_dimension_after_the_first_with_zeros():
    out = padded_cat([torch.ones(2, 3), torch.full((1, 5), 2.0)])
    assert out.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]


# ----------------------------------------------------------------------------- the stages use it

@pytest.fixture(scope="module")
def eval_batches(tmp_path_factory, tokenizer):
    """A classifier fine-tuned one epoch, then given weights whose outputs vary (:func:`model_for`) for
    stage=infer; the example lengths of each batch collated under inference mode in each stage."""
    out = tmp_path_factory.mktemp("order") / "model"
    seen = []
    collate = ClassifierTask.collate

    def spy(self, examples):
        if torch.is_inference_mode_enabled():
            seen.append([self.length(example) for example in examples])
        return collate(self, examples)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClassifierTask, "collate", spy)
        run_stage(compose_config([
            "stage=finetune", "task=classifier", f"finetune.train_path={DATA / 'book_review' / 'train.tsv'}",
            f"finetune.dev_path={DATA / 'book_review' / 'dev.tsv'}", f"output_model_path={out}", "size=tiny",
            *SMALL, "hardware.num_threads=1", "finetune.seq_length=48", "finetune.batch_size=8",
            "finetune.epochs_num=1", "finetune.report_steps=100"]))
        dev_batches = list(seen)
        seen.clear()
        payload = load_checkpoint(out / "best.pt")
        task = make_task(payload["config"]["task"], tokenizer, 48, payload["task_info"])
        model = model_for(task, 2)
        torch.save(sealed({**payload, "model": model.state_dict()}), out / "varied.pt")
        pred = out / "pred.tsv"
        run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'varied.pt'}",
                                  f"infer.test_path={DATA / 'book_review' / 'test_nolabel.tsv'}",
                                  f"infer.prediction_path={pred}", "infer.batch_size=8", "infer.output_logits=true",
                                  "hardware.num_threads=1"]))
    return dev_batches, list(seen), task, model, pred


def test_dev_evaluation_batches_longest_first(eval_batches):
    dev_batches, _, task, _, _ = eval_batches
    data = task.read(DATA / "book_review" / "dev.tsv", split="dev", labels_num=2, skip_bad_rows=False)
    lengths = [len(example.src) for example in data.examples]
    assert [n for batch in dev_batches for n in batch] == sorted(lengths, reverse=True) != lengths


def test_infer_batches_longest_first_and_writes_rows_in_file_order(eval_batches):
    _, infer_batches, task, model, pred = eval_batches
    data = task.read(DATA / "book_review" / "test_nolabel.tsv", split="infer", labels_num=None, skip_bad_rows=False)
    lengths = [len(example.src) for example in data.examples]
    assert [n for batch in infer_batches for n in batch] == sorted(lengths, reverse=True) != lengths
    file_order = torch.cat(predict(model, task, data, batch_size=8, device=CPU, precision="fp32", by_length=False))
    rows = [line.split("\t") for line in pred.read_text(encoding="utf-8").splitlines()[1:]]
    written = torch.tensor([[float(x) for x in logits.split()] for _, logits in rows])
    torch.testing.assert_close(written, file_order, atol=1e-4, rtol=1e-4)
    assert [int(label) for label, _ in rows] == file_order.argmax(dim=-1).tolist()
