"""Task heads of the RoBERTa, XLM-R, ALBERT, ELECTRA and GPT-2 families through tool=convert, exact both ways.

For each family and each head that crosses (uer/io/hf_heads.py's ``HEADS``), a randomly initialised transformers
task model (``from_config`` on a tiny config, every parameter moved off its initial value) saved with
``save_pretrained`` beside a tokenizer.json imports to a fine-tuned uer checkpoint whose model gives
transformers' logits within 1e-5 (RoBERTa's and XLM-R's inputs pad with id 1, which uer swaps with 0), and
exports back, without ``tool.hf_model_type``, as the same class with no missing or unexpected keys, the same
tensors (but RoBERTa's position rows below pad id + 1, which no position reads: zeros) and the same logits.

Then issue 21's case: a classifier fine-tuned from a RoBERTa-layout directory (byte-level BPE, pad id 1) records
the family it started from, so its export is ``RobertaForSequenceClassification``, and
``pipeline("text-classification")`` on it gives the labels ``stage=infer`` writes from the checkpoint alone; the
same for GPT-2's classifier (``task.pooling=last task.head=linear task.head_bias=false``).  A classifier fine-tuned
with settings its family's class does not compute (ELECTRA's dense + GELU, GPT-2's bias-free last-token
``score``) is refused, naming the settings that do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import pipeline

from tokenizer_testing import GPT2_CONFIG, GPT2_END, byte_level_bpe, gpt2_tokenizer, model_dir, published_dir
from uer.app import run_stage
from uer.errors import UerError
from uer.io import hf_directory
from uer.io.checkpoint import load_checkpoint
from uer.io.hf_format import load_hf_weights
from uer.io.hf_heads import split_head
from uer.models import build_backbone
from uer.stages.infer import load_fine_tuned
from uer.tokenizers.hf import swap_pad
from tool_testing import one_thread, task_outputs  # noqa: F401  (one_thread: a fixture)
from uer_testing import ROOT, compose_config, expect_user_error, slice_file

T = transformers
V, H, E, FF, HEADS, LAYERS, POSITIONS = 60, 32, 16, 64, 2, 2, 40
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
              "mask_token": "[MASK]"}
ANGLE = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order: <pad> = 1
ANGLE_ROLES = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
               "mask_token": "<mask>"}
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def bert_like(cls, **extra):
    return cls(**{"vocab_size": V, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                  "intermediate_size": FF, "max_position_embeddings": POSITIONS, **extra})


ANGLED = {"type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
          "max_position_embeddings": POSITIONS + 2}
FAMILIES = {  # family: (class stem, config, pad id, segments)
    "roberta": ("Roberta", lambda **k: bert_like(T.RobertaConfig, **{**ANGLED, **k}), 1, False),
    "xlm-roberta": ("XLMRoberta", lambda **k: bert_like(T.XLMRobertaConfig, **{**ANGLED, **k}), 1, False),
    "albert": ("Albert", lambda **k: bert_like(T.AlbertConfig, **{"embedding_size": E, "num_hidden_layers": 3, **k}),
               0, True),
    "electra": ("Electra", lambda **k: bert_like(T.ElectraConfig, **{"embedding_size": E, **k}), 0, True),
    "gpt2": ("GPT2", lambda **k: T.GPT2Config(**{"vocab_size": V, "n_embd": H, "n_layer": LAYERS, "n_head": HEADS,
                                                 "n_positions": POSITIONS, "bos_token_id": 2, "eos_token_id": 3,
                                                 "pad_token_id": 0,
                                                 **k}), 0, False),
}
HEAD_CLASSES = {"classifier": "ForSequenceClassification", "ner": "ForTokenClassification",
                "cmrc": "ForQuestionAnswering"}
CROSSING = [(family, task) for family in FAMILIES for task in HEAD_CLASSES]


pytestmark = pytest.mark.usefixtures("one_thread")


def labels(task):
    if task == "ner":
        return {"id2label": dict(enumerate(TAGS)), "label2id": {tag: i for i, tag in enumerate(TAGS)}}
    if task == "cmrc":
        return {"num_labels": 2}
    names = ["negative", "neutral", "positive"]  # named, so the names travel (ids alone are named "0", "1", ...)
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}


def hf_task_model(directory, family, task, seed=3):
    """A random ``family`` model with ``task``'s head, saved with a tokenizer.json of V whole words."""
    stem, config, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(T, stem + HEAD_CLASSES[task])(config(**labels(task)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    model.eval().save_pretrained(directory)
    specials, roles = (ANGLE, ANGLE_ROLES) if family in ("roberta", "xlm-roberta") else (SPECIALS, BERT_ROLES)
    tokens = specials + [f"w{i}" for i in range(V - len(specials))]
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=roles["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")
    return model


def convert(input_path, input_format, output_path, output_format, *extra):
    return Path(run_stage(compose_config(["stage=tool", "tool=convert", "hardware.num_threads=1",
                                     f"tool.input_path={input_path}", f"tool.input_format={input_format}",
                                     f"tool.output_path={output_path}", f"tool.output_format={output_format}",
                                     *extra])))


def inputs(family):
    """(HF keyword inputs with the family's padding id, uer's batch): rows padded after 20, 12 and 7 tokens."""
    _, _, pad_id, segments = FAMILIES[family]
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(5, V, (3, 20), generator=generator)
    mask = (torch.arange(20) < torch.tensor([[20], [12], [7]])).long()
    ids = ids * mask + pad_id * (1 - mask)
    token_type = (torch.arange(20) >= 5).long().expand(3, 20) * mask if segments else torch.zeros_like(ids)
    hf = {"input_ids": ids, "attention_mask": mask}
    if family != "gpt2":
        hf["token_type_ids"] = token_type
    ours = {"src": torch.tensor([swap_pad(row, pad_id) for row in ids.tolist()]), "seg": (token_type + 1) * mask}
    return hf, ours, mask.bool()


def hf_logits(task, model, hf):
    with torch.no_grad():
        output = model(**hf)
    return torch.stack([output.start_logits, output.end_logits], dim=-1) if task == "cmrc" else output.logits


def uer_logits(task, checkpoint):
    loaded = load_fine_tuned(compose_config(["stage=infer", f"infer.load_model_path={checkpoint}",
                                             "infer.seq_length=20", "hardware.num_threads=1"]), "infer")
    config, uer_task = loaded.payload["config"], loaded.task
    backbone = build_backbone(config["embedding"], config["encoder"], len(uer_task.tokenizer.vocab),
                              tokens=uer_task.tokenizer.vocab.tokens)
    model = uer_task.build_model(backbone, uer_task.info["labels_num"])
    model.load_state_dict(loaded.payload["model"])
    model.eval()

    return lambda batch: task_outputs(task, model, batch)


@pytest.mark.parametrize("family, task", CROSSING, ids=[f"{f}-{t}" for f, t in CROSSING])
def test_family_task_model_imports_exactly_and_exports_back(tmp_path, family, task):
    theirs = hf_task_model(tmp_path / "hf", family, task)
    back = convert(tmp_path / "hf", "hf", tmp_path / "model.pt", "uer_ckpt")
    payload = load_checkpoint(back)
    assert payload["config"]["task"]["type"] == task and payload["config"]["hf"]["model_type"] == family
    hf, ours, real = inputs(family)
    mine, reference = uer_logits(task, back)(ours), hf_logits(task, theirs, hf)
    if task != "classifier":  # per token: padded positions' outputs mean nothing in either model
        mine, reference = mine[real], reference[real]
    torch.testing.assert_close(mine, reference, atol=1e-5, rtol=0)

    again = convert(back, "uer_ckpt", tmp_path / "again", "hf")  # no tool.hf_model_type: the family it came from
    config = json.loads((again / "config.json").read_text(encoding="utf-8"))
    assert (config["model_type"], config["architectures"]) == (family, [type(theirs).__name__])
    reloaded, info = type(theirs).from_pretrained(again, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.config.id2label == theirs.config.id2label
    offset = FAMILIES[family][2] + 1 if family in ("roberta", "xlm-roberta") else 0
    for key, tensor in theirs.state_dict().items():
        if key.endswith("position_embeddings.weight") and offset:  # rows below pad id + 1 are never read: zeros
            assert torch.equal(reloaded.state_dict()[key][offset:], tensor[offset:])
            assert not reloaded.state_dict()[key][:offset].any()
        else:
            assert torch.equal(reloaded.state_dict()[key], tensor), key
    exported = hf_logits(task, reloaded.eval(), hf)
    torch.testing.assert_close(exported if task == "classifier" else exported[real], reference, atol=0, rtol=0)


# --- fine-tuned from a Hugging Face directory ------------------------------------------------------------

DATA = ROOT / "datasets" / "test_data" / "book_review"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rows")
    rows = {name: slice_file(DATA / f"{name}.tsv", tmp / f"{name}.tsv", count)
            for name, count in (("train", 32), ("dev", 16), ("test_nolabel", 16))}
    lines = rows["test_nolabel"].read_text(encoding="utf-8").splitlines()  # short: no truncation on either side
    rows["short"] = tmp / "short.tsv"
    rows["short"].write_text("".join(f"{line[:24]}\n" for line in lines), encoding="utf-8")
    return rows


def finetuned_from(tmp_path, rows, family, *extra, **config_changes):
    """A classifier fine-tuned from a ``family`` masked-LM / LM directory with a byte-level BPE tokenizer
    (GPT-2's as published: <|endoftext|> alone, no padding named)."""
    if family == "gpt2":
        tokenizer = gpt2_tokenizer()
        directory = published_dir(tmp_path / "model", tokenizer, GPT2_CONFIG)
    else:
        tokenizer = byte_level_bpe(ANGLE if family == "roberta" else SPECIALS)
        directory = model_dir(tmp_path / "model", tokenizer, ANGLE_ROLES if family == "roberta" else BERT_ROLES)
    stem, config, _, _ = FAMILIES[family]
    cls = {"roberta": "RobertaForMaskedLM", "electra": "ElectraForMaskedLM", "gpt2": "GPT2LMHeadModel"}[family]
    torch.manual_seed(0)
    getattr(T, cls)(config(vocab_size=tokenizer.get_vocab_size(), **config_changes)).save_pretrained(directory)
    out = tmp_path / "out"
    run_stage(compose_config([
        "task=classifier", f"pretrained_model_path={directory}", f"finetune.train_path={rows['train']}",
        f"finetune.dev_path={rows['dev']}", f"output_model_path={out}", "hardware.num_threads=1",
        "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1", *extra]))
    (tmp_path / "model").rename(tmp_path / "gone")  # from here on the checkpoint alone
    return out / "best.pt"


def assert_pipeline_gives_infers_labels(tmp_path, rows, checkpoint, exported):
    """``pipeline("text-classification")`` on ``exported`` gives the labels and logits stage=infer writes."""
    prediction = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={checkpoint}",
                              f"infer.test_path={rows['short']}", f"infer.prediction_path={prediction}",
                              "infer.seq_length=128", "infer.output_logits=true", "hardware.num_threads=1"]))
    predicted = [line.split("\t") for line in prediction.read_text(encoding="utf-8").splitlines()[1:]]
    labels = [label for label, _ in predicted]
    logits = torch.tensor([[float(x) for x in row.split()] for _, row in predicted])
    texts = rows["short"].read_text(encoding="utf-8").splitlines()[1:]
    encoded = Tokenizer.from_file(str(exported / "tokenizer.json")).encode_batch(texts)
    assert max(len(row.ids) for row in encoded) < 100  # within infer.seq_length and the 128 positions
    classify = pipeline("text-classification", model=str(exported), device="cpu")
    assert len(labels) == len(texts) == 16
    assert [result["label"] for result in classify(texts)] == labels
    # the logits too (labels may all agree), in padded batches (GPT-2 finds its last token by pad_token_id)
    scores = classify(texts, top_k=None, function_to_apply="none", batch_size=8)
    theirs = torch.tensor([[next(s["score"] for s in row if s["label"] == str(i)) for i in range(2)] for row in scores])
    torch.testing.assert_close(theirs, logits, atol=1e-5, rtol=1e-5)


def architecture(directory):
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))["architectures"]


def test_a_classifier_fine_tuned_from_a_roberta_directory_exports_as_roberta_with_infers_labels(tmp_path, rows):
    checkpoint = finetuned_from(tmp_path, rows, "roberta", max_position_embeddings=130)
    assert load_checkpoint(checkpoint)["config"]["hf"]["model_type"] == "roberta"
    exported = convert(checkpoint, "uer_ckpt", tmp_path / "hf", "hf")  # no tool.hf_model_type
    assert architecture(exported) == ["RobertaForSequenceClassification"]
    assert_pipeline_gives_infers_labels(tmp_path, rows, checkpoint, exported)


def test_an_electra_classifier_exports_as_bert_when_asked(tmp_path, rows):
    """The way out the ELECTRA refusal offers: with embedding size = hidden size BERT's class computes it."""
    checkpoint = finetuned_from(tmp_path, rows, "electra", embedding_size=H, max_position_embeddings=130)
    exported = convert(checkpoint, "uer_ckpt", tmp_path / "hf", "hf", "tool.hf_model_type=bert")
    assert architecture(exported) == ["BertForSequenceClassification"]
    assert_pipeline_gives_infers_labels(tmp_path, rows, checkpoint, exported)


def test_a_gpt2_classifier_fine_tuned_from_a_directory_exports_as_gpt2_with_infers_labels(tmp_path, rows):
    """GPT-2's score: the last token's vector, one bias-free linear; config.json's pad_token_id finds that token."""
    checkpoint = finetuned_from(tmp_path, rows, "gpt2", *GPT2_SCORE, n_positions=130)
    exported = convert(checkpoint, "uer_ckpt", tmp_path / "hf", "hf")
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    end = Tokenizer.from_file(str(exported / "tokenizer.json")).token_to_id(GPT2_END)  # uer pads with it
    assert config["architectures"] == ["GPT2ForSequenceClassification"] and config["pad_token_id"] == end
    assert_pipeline_gives_infers_labels(tmp_path, rows, checkpoint, exported)


GPT2_SCORE = ("task.pooling=last", "task.head=linear", "task.head_bias=false")


def test_a_fine_tuning_run_reads_the_directory_s_weights_once(tmp_path, rows, monkeypatch):
    """The stage's checks and the weights' loading share one read; a file that changes is read again."""
    reads = []
    monkeypatch.setattr(hf_directory, "load_hf_weights", lambda path: reads.append(path) or load_hf_weights(path))
    finetuned_from(tmp_path, rows, "roberta", max_position_embeddings=40)
    assert reads == [tmp_path / "model"]
    directory = tmp_path / "gone"  # the same directory, renamed: another path is another read
    hf_directory.read_hf_directory(directory)
    hf_directory.read_hf_directory(directory)
    weights = directory / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))
    hf_directory.read_hf_directory(directory)
    assert reads == [tmp_path / "model", directory, directory]


def test_a_last_token_head_whose_tokenizer_ends_texts_with_its_padding_token_is_refused():
    """transformers would score the token before that closing one: the export would not be the model."""
    task = {"type": "classifier", "pooling": "last", "head": "linear", "head_bias": False}
    _, head = split_head({"config": {"task": task}}, {"output_layer_2.weight": torch.zeros(2, H)}, "clf.pt", "gpt2")
    head.check_last_token(None, "clf.pt")  # GPT-2's framing: the text's own last token
    head.check_last_token(3, "clf.pt")  # [SEP] 3, padding 0: transformers finds [SEP]
    with pytest.raises(UerError, match=r"^clf.pt's tokenizer ends every text with its padding token, .* "
                                       "GPT2ForSequenceClassification scores the last token that is not pad_token_id"):
        head.check_last_token(0, "clf.pt")


@pytest.mark.parametrize("family, settings, message", [
    ("electra", (), "task.head=dense_tanh, but ElectraForSequenceClassification computes task.pooling=first "
                    "task.head=dense_gelu task.head_bias=true; only such a model converts to it: fine-tune with "
                    "those; export it with tool.hf_model_type=bert"),
    ("gpt2", ("task.pooling=last", "task.head=linear"), "task.head_bias=true, but GPT2ForSequenceClassification "
                                                         "computes task.pooling=last task.head=linear "
                                                         "task.head_bias=false; only such a model converts to it"),
], ids=["electra", "gpt2"])
def test_a_classifier_its_family_s_class_does_not_compute_is_refused(tmp_path, capsys, rows, family, settings,
                                                                     message):
    checkpoint = finetuned_from(tmp_path, rows, family, *settings)
    expect_user_error(capsys, compose_config(["stage=tool", "tool=convert", f"tool.input_path={checkpoint}",
                                              "tool.input_format=uer_ckpt", f"tool.output_path={tmp_path / 'hf'}",
                                              "tool.output_format=hf"]), message)
    assert not (tmp_path / "hf").exists()
