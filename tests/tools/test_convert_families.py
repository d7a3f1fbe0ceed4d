"""Every Hugging Face family both ways, exact: BERT, RoBERTa, XLM-R, ELECTRA, ALBERT, GPT-2.

For each family and head class, a randomly initialised transformers model from a tiny config (every parameter
moved off its initial value, so LayerNorms and biases matter) is saved with ``save_pretrained`` beside its
tokenizer files, then

* read as it is (``read_model_file(DIR)``, what ``pretrained_model_path=DIR`` and the tools read) and built with
  this project's model: hidden states and head logits within 1e-5 of transformers in eval mode, on a batch with
  padded rows (RoBERTa's and XLM-R's tokenizer.json pads with id 1, which uer swaps with id 0);
* converted to a uer checkpoint and back to Hugging Face (``tool=convert``): the directory loads with the class
  its ``config.json`` names and no missing or unexpected keys, gives the same outputs, and is of the family the
  model came from; converted back again, every tensor equals the first checkpoint's (uer -> hf -> uer).

Then models that start here (the family their shape needs, or the one ``tool.hf_model_type`` names), fine-tuning
from a RoBERTa-layout and a GPT-2-layout directory, and the bad inputs: one line, nothing written.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from tokenizer_testing import GPT2_CONFIG, GPT2_END, byte_level_bpe, gpt2_tokenizer, model_dir, published_dir
from tool_testing import no_temp_files, one_thread, payload_model  # noqa: F401  (one_thread: a fixture)
from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.io.formats import read_model_file
from uer.models import build_model
from uer.tasks import make_task
from uer.tokenizers import tokenizer_from_state
from uer.tokenizers.hf import swap_pad
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, save_model_checkpoint, slice_file

V, H, E, FF, HEADS, LAYERS, POSITIONS = 60, 32, 16, 64, 2, 2, 40
ATOL = 1e-5
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
              "mask_token": "[MASK]"}
ANGLE = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order: <s> = 0, <pad> = 1
ANGLE_ROLES = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
               "mask_token": "<mask>"}


def bert_like(cls, **extra):
    return cls(**{"vocab_size": V, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                  "intermediate_size": FF, "max_position_embeddings": POSITIONS, **extra})


T = transformers
FAMILIES = {
    "bert": (lambda: bert_like(T.BertConfig), ["BertForPreTraining", "BertForMaskedLM", "BertModel"], "vocab.txt"),
    "roberta": (lambda: bert_like(T.RobertaConfig, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                  eos_token_id=2, max_position_embeddings=POSITIONS + 2),
                ["RobertaForMaskedLM", "RobertaModel"], "angle"),
    "xlm-roberta": (lambda: bert_like(T.XLMRobertaConfig, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                      eos_token_id=2, max_position_embeddings=POSITIONS + 2),
                    ["XLMRobertaForMaskedLM"], "angle"),
    "electra": (lambda: bert_like(T.ElectraConfig, embedding_size=E), ["ElectraForMaskedLM", "ElectraModel"],
                "bert"),
    "albert": (lambda: bert_like(T.AlbertConfig, embedding_size=E, num_hidden_layers=3),
               ["AlbertForPreTraining", "AlbertForMaskedLM", "AlbertModel"], "bert"),
    "gpt2": (lambda: T.GPT2Config(vocab_size=V, n_embd=H, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                                  bos_token_id=V - 1, eos_token_id=V - 1),
             ["GPT2LMHeadModel", "GPT2Model"], "gpt2"),
}
CASES = [(name, cls) for name, (_, classes, _) in FAMILIES.items() for cls in classes]


pytestmark = pytest.mark.usefixtures("one_thread")


def randomized(model, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval()


def word_level(directory, specials, roles):
    """A tokenizer.json of V whole-word tokens (specials first) and the roles' special_tokens_map.json."""
    tokens = specials + [f"w{i}" for i in range(V - len(specials))]
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=roles["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")


def hf_directory(directory, name: str, cls: str, seed: int = 1):
    """A random ``cls`` model of family ``name`` saved with save_pretrained, with its tokenizer; the model."""
    config, _, tokenizer = FAMILIES[name]
    torch.manual_seed(seed)
    model = randomized(getattr(T, cls)(config()), seed)
    model.save_pretrained(directory)
    if tokenizer == "vocab.txt":  # a classic BertTokenizer directory: tokenizer=bert
        tokens = SPECIALS + [f"w{i}" for i in range(V - len(SPECIALS))]
        (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
        (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    elif tokenizer == "angle":
        word_level(directory, ANGLE, ANGLE_ROLES)
    elif tokenizer == "gpt2":  # as published: <|endoftext|> alone and last, no padding (uer pads with it)
        words = [f"w{i}" for i in range(V - 1)]
        vocabulary = {token: i for i, token in enumerate([*words, GPT2_END])}
        tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=GPT2_END))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        published_dir(directory, tokenizer, GPT2_CONFIG)
    else:
        word_level(directory, SPECIALS, BERT_ROLES)
    return model


def batch(pad_id: int, segments: bool):
    """HF inputs (ids with the file's padding id, attention mask, token types) and uer's (ids, segments)."""
    generator = torch.Generator().manual_seed(2)
    src = torch.randint(5, V, (3, 12), generator=generator)
    mask = torch.ones_like(src)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    ids = src * mask + pad_id * (1 - mask)
    token_type = torch.zeros_like(src)
    if segments:
        token_type[:, 6:] = 1
    token_type *= mask
    ours = torch.tensor([swap_pad(row, pad_id) for row in ids.tolist()])
    return ids, mask, token_type, ours, (token_type + 1) * mask


def our_model(payload):
    model, unexpected = payload_model(payload)
    assert all(key.startswith(("target.nsp_linear_1.", "target.sop_linear_1.")) for key in unexpected)
    return model  # a bare model's pooler travels along, unused


def head_outputs(cls: str, output) -> dict:
    """transformers' head logits by name (vocabulary logits in the file's id order)."""
    names = {"prediction_logits": "mlm", "logits": "lm" if "LMHead" in cls else "mlm",
             "seq_relationship_logits": "pair", "sop_logits": "pair"}
    return {names[key]: value for key, value in output.items() if key in names}


def our_heads(model, hidden, pad_id: int) -> dict:
    if not hasattr(model, "target"):
        return {}
    target, outputs = model.target, {}
    if hasattr(target, "mlm_linear_1"):
        outputs["mlm"] = target.mlm_linear_2(target.layer_norm(target.act(target.mlm_linear_1(hidden))))
    if hasattr(target, "output_layer"):
        outputs["lm"] = target.output_layer(hidden)
    for task in ("nsp", "sop"):
        if hasattr(target, f"{task}_linear_1"):
            pooled = torch.tanh(getattr(target, f"{task}_linear_1")(hidden[:, 0]))
            outputs["pair"] = getattr(target, f"{task}_linear_2")(pooled)
    for key in ("mlm", "lm"):  # uer's ids -> the file's
        if key in outputs:
            outputs[key] = outputs[key][..., swap_pad(range(outputs[key].size(-1)), pad_id)]
    return outputs


def hf_pad(config) -> int:
    """The padding id: the config's, else (GPT-2) its end-of-text token, which uer pads with."""
    pad = getattr(config, "pad_token_id", None)
    return pad if pad is not None else getattr(config, "eos_token_id", None) or 0


@torch.no_grad()
def assert_same_outputs(theirs_model, cls: str, ours=None, other=None):
    """``ours`` (a uer model) or ``other`` (a transformers model) gives ``theirs_model``'s outputs on real tokens."""
    pad_id = hf_pad(theirs_model.config)
    segments = "GPT2" not in cls
    ids, mask, token_type, our_ids, seg = batch(pad_id, segments)
    inputs = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
    if segments and getattr(theirs_model.config, "type_vocab_size", 2) == 2:
        inputs["token_type_ids"] = token_type
    else:
        seg = mask.clone()  # one token type: uer's first segment
    theirs = theirs_model(**inputs)
    real = mask.bool()
    if ours is not None:
        backbone = ours.backbone if hasattr(ours, "backbone") else ours["backbone"]
        hidden = backbone(our_ids, seg)
        mine = our_heads(ours, hidden, pad_id)
    else:
        output = other(**inputs)
        hidden, mine = output.hidden_states[-1], head_outputs(cls, output)
    torch.testing.assert_close(hidden[real], theirs.hidden_states[-1][real], rtol=0, atol=ATOL)
    expected = head_outputs(cls, theirs)
    assert set(mine) >= set(expected), (sorted(mine), sorted(expected))
    for key, value in expected.items():
        if key == "pair":
            torch.testing.assert_close(mine[key], value, rtol=0, atol=ATOL)
        else:
            torch.testing.assert_close(mine[key][real], value[real], rtol=0, atol=ATOL)


def convert(input_path, input_format, output_path, output_format, *extra):
    return run_stage(compose_config(["stage=tool", "tool=convert", "hardware.num_threads=1",
                                     f"tool.input_path={input_path}", f"tool.input_format={input_format}",
                                     f"tool.output_path={output_path}", f"tool.output_format={output_format}",
                                     *extra]))


def load_as_named(directory):
    """The class config.json names, loaded from ``directory``: (model, loading info)."""
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    model, info = getattr(T, config["architectures"][0]).from_pretrained(directory, output_loading_info=True)
    return model.eval(), info, config


def assert_same_tensors(ours: dict, reference: dict):
    assert sorted(ours) == sorted(reference)
    for key, tensor in reference.items():
        assert torch.equal(ours[key], tensor), key


@pytest.mark.parametrize("name, cls", CASES, ids=[f"{name}-{cls}" for name, cls in CASES])
def test_family_both_ways_exact(tmp_path, name, cls):
    source = tmp_path / "hf"
    theirs = hf_directory(source, name, cls)

    kind, payload = read_model_file(source)  # pretrained_model_path=DIR
    assert kind == "pt" and payload["config"]["hf"]["model_type"] == name
    assert_same_outputs(theirs, cls, ours=our_model(payload))

    ours = tmp_path / "model.pt"
    convert(source, "hf", ours, "uer_ckpt")
    first = load_checkpoint(ours)
    assert_same_tensors(first["model"], payload["model"])
    for node in ("model", "embedding", "encoder", "target"):
        assert first["config"].get(node) is None or first["config"][node].items() >= payload["config"][node].items()
    assert first["vocab"] == payload["vocab"]

    exported = tmp_path / "exported"
    convert(ours, "uer_ckpt", exported, "hf")  # no tool.hf_model_type: the family it came from
    again, info, config = load_as_named(exported)
    assert config["model_type"] == name
    assert config["architectures"] == [cls if cls != "ElectraForPreTraining" else "ElectraModel"]
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_same_outputs(theirs, cls, other=again)
    tokenizer = T.AutoTokenizer.from_pretrained(exported)
    text = "w3 w17 w40"
    file_ids = Tokenizer.from_file(str(source / "tokenizer.json")).encode(text).ids \
        if (source / "tokenizer.json").is_file() else [int(w[1:]) + len(SPECIALS) for w in text.split()]
    if name == "gpt2":  # the published tokenizer goes back unchanged: no special tokens added, no padding named
        assert (exported / "tokenizer.json").read_text() == (source / "tokenizer.json").read_text()
        assert tokenizer(text)["input_ids"] == file_ids and tokenizer.pad_token is None
        assert config["bos_token_id"] == config["eos_token_id"] == tokenizer.eos_token_id == V - 1
    else:
        cls_id, sep_id = (0, 2) if FAMILIES[name][2] == "angle" else (2, 3)
        assert tokenizer(text)["input_ids"] == [cls_id, *file_ids, sep_id]
        assert tokenizer.pad_token_id == hf_pad(theirs.config)
    assert config["pad_token_id"] == hf_pad(theirs.config)

    back = tmp_path / "back.pt"
    convert(exported, "hf", back, "uer_ckpt")  # uer -> hf -> uer: bit-identical
    second = load_checkpoint(back)
    assert_same_tensors(second["model"], first["model"])
    for node in ("model", "embedding", "encoder", "target"):
        assert second["config"].get(node) == first["config"].get(node), node
    assert second["config"]["hf"]["model_type"] == name


def test_electra_discriminator_head_is_dropped_with_a_warning(tmp_path, caplog):
    source = tmp_path / "hf"
    theirs = hf_directory(source, "electra", "ElectraForPreTraining")
    kind, payload = read_model_file(source)
    assert "target" not in payload["config"]
    assert "discriminator_predictions.dense.weight" in caplog.text and "not used" in caplog.text
    with torch.no_grad():
        ids, mask, token_type, ours_ids, seg = batch(0, True)
        hidden = our_model(payload)["backbone"](ours_ids, seg)
        expected = theirs.electra(input_ids=ids, attention_mask=mask, token_type_ids=token_type).last_hidden_state
    torch.testing.assert_close(hidden[mask.bool()], expected[mask.bool()], rtol=0, atol=ATOL)
    exported = tmp_path / "exported"
    convert(source, "hf", exported, "hf")
    model, info, config = load_as_named(exported)
    assert config["architectures"] == ["ElectraModel"] and not info["missing_keys"] and not info["unexpected_keys"]


# --- models that start here ----------------------------------------------------------------------

GPT2 = ("encoder=gpt", "target=lm", "encoder.layernorm_positioning=pre", "embedding.remove_layernorm=true",
        "target.output_bias=false")


def project_checkpoint(path, vocab, *overrides, seed=4):
    cfg = compose_config(["tokenizer=char", f"tokenizer.vocab_path={vocab}", "size=tiny", *SMALL, *overrides])
    torch.manual_seed(seed)
    model = randomized(build_model(cfg.embedding, cfg.encoder, cfg.target, V), seed)
    save_model_checkpoint(path, model, cfg)
    return model, cfg


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(f"{t}\n" for t in SPECIALS + [f"w{i}" for i in range(V - len(SPECIALS))]),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("overrides, family, cls", [
    (("target=bert",), "bert", "BertForPreTraining"),
    (("target=mlm", "model.emb_size=16"), "electra", "ElectraForMaskedLM"),
    (("target=albert", "size=albert_base", "model.emb_size=16", "model.hidden_size=32"), "albert",
     "AlbertForPreTraining"),
    (("target=albert", "size=albert_base", "model.emb_size=32", "model.hidden_size=32"), "albert",
     "AlbertForPreTraining"),  # emb_size = hidden_size: ALBERT's projection is written as the identity
    (GPT2, "gpt2", "GPT2LMHeadModel"),
    (("target=mlm", "tool.hf_model_type=roberta"), "roberta", "RobertaForMaskedLM"),
], ids=["bert", "electra", "albert", "albert-no-projection", "gpt2", "chosen-roberta"])
def test_a_model_trained_here_goes_out_as_the_family_its_shape_needs(tmp_path, vocab, overrides, family, cls):
    chosen = [o for o in overrides if o.startswith("tool.")]
    model, _ = project_checkpoint(tmp_path / "step_1.pt", vocab, *[o for o in overrides if o not in chosen])
    exported = tmp_path / "exported"
    convert(tmp_path / "step_1.pt", "uer_ckpt", exported, "hf", *chosen)
    theirs, info, config = load_as_named(exported)
    assert (config["model_type"], config["architectures"]) == (family, [cls])
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_same_outputs(theirs, cls, ours=model.eval())
    back = tmp_path / "back.pt"
    convert(exported, "hf", back, "uer_ckpt")
    assert_same_tensors(load_checkpoint(back)["model"], model.state_dict())  # the padding segment row too
    again = tmp_path / "again"
    convert(back, "uer_ckpt", again, "hf")  # from the first crossing on, both ways are exact
    assert_same_tensors(load_as_named(again)[0].state_dict(), theirs.state_dict())


def test_a_chosen_family_that_cannot_hold_the_model_is_refused(tmp_path, vocab, capsys):
    project_checkpoint(tmp_path / "step_1.pt", vocab, "target=bert")
    out = tmp_path / "out"
    line = failure(capsys, tmp_path / "step_1.pt", "uer_ckpt", out, "hf", "tool.hf_model_type=gpt2")
    assert "GPT-2 has no token type embedding; this model has one (embedding=word_pos_seg)" in line, line
    assert "tool=convert writes uer_ckpt and uer for every transformer model; hf for the models" in line
    assert not out.exists()
    line = failure(capsys, tmp_path / "step_1.pt", "uer_ckpt", tmp_path / "x.pt", "uer_ckpt",
                   "tool.hf_model_type=gpt2")
    assert "tool.hf_model_type=gpt2 names the Hugging Face family tool.output_format=hf writes" in line


def failure(capsys, *args) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        convert(*args)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


# --- fine-tuning from a Hugging Face directory ------------------------------------------------------

DATA = ROOT / "datasets" / "test_data" / "book_review"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rows")
    return {name: slice_file(DATA / f"{name}.tsv", tmp / f"{name}.tsv", count)
            for name, count in (("train", 32), ("dev", 16), ("test", 16), ("test_nolabel", 16))}


@pytest.mark.parametrize("name", ["roberta", "gpt2"])
def test_finetune_from_a_hugging_face_directory_and_infer_from_its_checkpoint(tmp_path, rows, name):
    """Family, sizes and tokenizer (a byte-level BPE tokenizer.json; RoBERTa's pads with id 1) come from the
    directory; the fine-tuned checkpoint alone predicts."""
    if name == "roberta":
        tokenizer = byte_level_bpe(ANGLE)
        directory = model_dir(tmp_path / "model", tokenizer, ANGLE_ROLES)
        config = T.RobertaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=H, num_hidden_layers=LAYERS,
                                 num_attention_heads=HEADS, intermediate_size=FF, max_position_embeddings=66,
                                 type_vocab_size=1, pad_token_id=1)
        T.RobertaForMaskedLM(config).save_pretrained(directory)
        extra = []
    else:  # the published shape: byte-level BPE, <|endoftext|> alone (uer pads with it: swapped to id 0)
        tokenizer = gpt2_tokenizer()
        directory = published_dir(tmp_path / "model", tokenizer, GPT2_CONFIG)
        end = tokenizer.token_to_id(GPT2_END)
        config = T.GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=H, n_layer=LAYERS, n_head=HEADS,
                              n_positions=64, bos_token_id=end, eos_token_id=end)
        T.GPT2LMHeadModel(config).save_pretrained(directory)
        extra = ["task.pooling=mean"]  # position 0 of a causal model has seen one token alone
    out = tmp_path / "out"
    score = run_stage(compose_config([
        "task=classifier", f"pretrained_model_path={directory}", f"finetune.train_path={rows['train']}",
        f"finetune.dev_path={rows['dev']}", f"finetune.test_path={rows['test']}", f"output_model_path={out}",
        "hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        *extra]))
    assert 0.0 <= score <= 1.0
    payload = load_checkpoint(out / "best.pt")
    assert payload["config"]["encoder"]["layernorm_positioning"] == ("pre" if name == "gpt2" else "post")
    assert payload["tokenizer"]["config"]["type"] == "hf"
    if name == "gpt2":  # the text alone, as GPT-2's tokenizer gives it: no [CLS] or [SEP] added
        task = make_task(payload["config"]["task"], tokenizer_from_state(payload["tokenizer"], "best.pt"), 32)
        ids = tokenizer.encode("好书").ids
        assert task.encode("好书") == (swap_pad(ids, end), [1] * len(ids)) and end not in ids
    moved = tmp_path / "moved"  # the checkpoint alone: the model directory is gone
    shutil.move(directory, moved)
    prediction = tmp_path / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={out / 'best.pt'}",
                              f"infer.test_path={rows['test_nolabel']}", f"infer.prediction_path={prediction}"]))
    assert len(prediction.read_text(encoding="utf-8").splitlines()) == 17


def test_tools_read_a_hugging_face_directory(tmp_path):
    """tool=generate on a GPT-2 directory with the published tokenizer's shape: the prompt alone (no [CLS]),
    stopping at <|endoftext|>; the cache on and off give the text transformers' generate() gives."""
    tokenizer = gpt2_tokenizer()
    directory = published_dir(tmp_path / "gpt2", tokenizer, GPT2_CONFIG)
    end = tokenizer.token_to_id(GPT2_END)
    config = T.GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=H, n_layer=LAYERS, n_head=HEADS,
                          n_positions=POSITIONS, bos_token_id=end, eos_token_id=end)
    torch.manual_seed(3)
    theirs = randomized(T.GPT2LMHeadModel(config), 3)
    with torch.no_grad():
        theirs.lm_head.weight[end] += 1.0  # <|endoftext|> likely within a few steps, as in text
    theirs.save_pretrained(directory)
    prompt = "The quick brown"
    ids = torch.tensor([tokenizer.encode(prompt).ids])
    with torch.no_grad():
        out = theirs.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                              pad_token_id=end)[0].tolist()
    expected = T.AutoTokenizer.from_pretrained(directory).decode(out[:out.index(end) if end in out else None])
    texts = []
    for cache in ("true", "false"):
        generated = tmp_path / f"generated_{cache}.txt"
        run_stage(compose_config(["stage=tool", "tool=generate", f"tool.input_path={directory}", f"tool.text={prompt}",
                                  "tool.max_new_tokens=12", "tool.temperature=0", f"tool.use_cache={cache}",
                                  f"tool.output_path={generated}", "hardware.num_threads=1"]))
        texts.append(generated.read_text(encoding="utf-8"))
    assert texts == [expected + "\n"] * 2 and len(expected) > len(prompt)


# --- bad inputs ------------------------------------------------------------------------------------

def bad_directory(tmp_path, problem: str):
    directory = tmp_path / "bad"
    if problem == "no config.json":
        hf_directory(directory, "bert", "BertModel")
        (directory / "config.json").unlink()
    elif problem == "another family":
        hf_directory(directory, "bert", "BertForMaskedLM")
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    elif problem == "vocabulary size":
        hf_directory(directory, "electra", "ElectraModel")
        tokens = SPECIALS + [f"w{i}" for i in range(10)]
        tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
        tokenizer.save(str(directory / "tokenizer.json"))
    elif problem == "unknown family":
        hf_directory(directory, "bert", "BertModel")
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    elif problem == "no tokenizer":
        hf_directory(directory, "gpt2", "GPT2Model")
        (directory / "tokenizer.json").unlink()
    return directory


PROBLEMS = {
    "no config.json": ["bad has no config.json, so its family and sizes are unknown"],
    "another family": ["bad/model.safetensors has no RoBERTa layers (roberta.encoder.layer.0.*)",
                       "its names are those of BERT (bert.*), but", "config.json says model_type roberta"],
    "vocabulary size": ["bad/tokenizer.json has 15 tokens but", f"has {V} word embedding rows"],
    "unknown family": ["config.json: model_type 'llama' is not a family uer builds"],
    "no tokenizer": ["bad has neither tokenizer.json nor vocab.txt", "save_pretrained(DIR)"],
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_a_bad_directory_is_one_line_and_nothing_is_written(tmp_path, capsys, rows, problem):
    directory = bad_directory(tmp_path, problem)
    out = tmp_path / "out"
    cfg = compose_config(["task=classifier", f"pretrained_model_path={directory}",
                          f"finetune.train_path={rows['train']}", f"output_model_path={out}", "hardware.num_threads=1"])
    expect_user_error(capsys, cfg, *PROBLEMS[problem])
    assert not out.exists() or not any(out.iterdir())
    if problem in ("another family", "unknown family", "vocabulary size"):  # tool=convert reads the same way
        converted = tmp_path / "converted.pt"
        line = failure(capsys, directory, "hf", converted, "uer_ckpt")
        assert all(fragment.removeprefix("bad/") in line for fragment in PROBLEMS[problem][:1]), line
        assert not converted.exists() and no_temp_files(tmp_path)


def test_a_hugging_face_weights_file_names_its_directory_as_the_way(tmp_path, capsys):
    directory = tmp_path / "hf"
    hf_directory(directory, "bert", "BertModel")
    with pytest.raises(Exception, match="give its model directory"):
        read_model_file(directory / "model.safetensors")
