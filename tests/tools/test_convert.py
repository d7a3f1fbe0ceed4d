"""tool=convert: exact parity with Hugging Face and Google TF BERT checkpoints, round trips, bad inputs.

Random tiny models (hidden 32, 2 layers, 2 heads, vocab 100) are converted into this
project's checkpoint and must give the same last hidden states, MLM logits and NSP
logits as the source (atol 1e-5); converting back must give identical tensors.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import BertConfig, BertForPreTraining, BertModel

from uer.io import hf_format
from uer.io.checkpoint import MODEL_NODES, load_checkpoint
from uer.io.uer_format import load_uer_bin
from uer.models import build_model
from uer.app import run_stage
from tool_testing import one_thread, payload_model  # noqa: F401  (one_thread: a fixture)
from uer_testing import SMALL, compose_config, error_lines, run_main, save_model_checkpoint

H, LAYERS, HEADS, FF, V, POSITIONS = 32, 2, 2, 64, 100, 64
ATOL = 1e-5
TF_SKIP = "tensorflow is not installed (pip install -e '.[tf]'; CI installs it)"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"tok{i}" for i in range(5, V)]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def hf_config() -> BertConfig:
    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=FF, max_position_embeddings=POSITIONS)


def randomized(model, seed: int):
    """Every parameter (LayerNorms and biases too) moved off its initial value, so each one matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def hf_model():
    return randomized(BertForPreTraining(hf_config()), seed=1)


def inputs():
    """Ids, HF attention mask and token types; rows 1 and 2 are padded."""
    generator = torch.Generator().manual_seed(2)
    src = torch.randint(5, V, (3, 16), generator=generator)
    mask = torch.ones_like(src)
    mask[1, 11:] = 0
    mask[2, 6:] = 0
    token_type = torch.zeros_like(src)
    token_type[:, 4:] = 1
    token_type *= mask
    src = src * mask
    return src, mask, token_type


def convert(vocab, input_path, input_format, output_path, output_format, *extra):
    cfg = compose_config(["stage=tool", "tool=convert", f"tokenizer.vocab_path={vocab}", "hardware.num_threads=1",
                          f"tool.input_path={input_path}", f"tool.input_format={input_format}",
                          f"tool.output_path={output_path}", f"tool.output_format={output_format}", *extra])
    return run_stage(cfg)


def failure(capsys, vocab, *args) -> str:
    """The one error line a failed conversion prints (after exiting with status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        convert(vocab, *args)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@torch.no_grad()
def assert_parity(payload, hf):
    """Our converted model and the HF BertForPreTraining agree on hidden states, MLM and NSP logits."""
    model, unexpected = payload_model(payload)
    assert not unexpected
    src, mask, token_type = inputs()
    theirs = hf(input_ids=src, attention_mask=mask, token_type_ids=token_type, output_hidden_states=True)
    seg = (token_type + 1) * mask  # UER segments: 1 = first, 2 = second, 0 = padding
    hidden = model.backbone(src, seg)
    target = model.target
    mlm = target.mlm_linear_2(target.layer_norm(target.act(target.mlm_linear_1(hidden))))
    nsp = target.nsp_linear_2(torch.tanh(target.nsp_linear_1(hidden[:, 0])))
    real = mask.bool()
    torch.testing.assert_close(hidden[real], theirs.hidden_states[-1][real], rtol=0, atol=ATOL)
    torch.testing.assert_close(mlm[real], theirs.prediction_logits[real], rtol=0, atol=ATOL)
    torch.testing.assert_close(nsp, theirs.seq_relationship_logits, rtol=0, atol=ATOL)


def assert_same_tensors(ours: dict, reference: dict):
    assert sorted(ours) == sorted(reference)
    for key, tensor in reference.items():
        assert torch.equal(ours[key], tensor), key


# --- Hugging Face ---------------------------------------------------------------------------

def test_hf_bin_to_ours_parity_and_back(tmp_path, vocab, hf_model):
    source = tmp_path / "pytorch_model.bin"
    torch.save(hf_model.state_dict(), source)
    ours = tmp_path / "ours.pt"
    assert convert(vocab, source, "hf", ours, "uer_ckpt", f"model.heads_num={HEADS}") == str(ours)
    payload = load_checkpoint(ours)
    config = payload["config"]
    assert config["encoder"]["layers_num"] == LAYERS and config["encoder"]["hidden_size"] == H
    assert config["encoder"]["feedforward_size"] == FF and config["encoder"]["heads_num"] == HEADS
    assert config["embedding"]["max_seq_length"] == POSITIONS
    assert config["encoder"]["layernorm_eps"] == config["embedding"]["layernorm_eps"] == 1e-12
    assert config["encoder"]["hidden_act"] == "gelu"
    assert config["target"]["type"] == "bert" and config["target"]["tie_weights"] is True
    assert payload["vocab"]["vocab_size"] == V and payload["trainer"] is None
    assert_parity(payload, hf_model)

    back = tmp_path / "back" / "pytorch_model.bin"
    convert(vocab, ours, "uer_ckpt", back, "hf")
    assert_same_tensors(torch.load(back, weights_only=True), hf_model.state_dict())
    written = json.loads((back.parent / "config.json").read_text())
    assert (written["num_attention_heads"], written["num_hidden_layers"], written["layer_norm_eps"]) == (2, 2, 1e-12)


def test_hf_safetensors_from_save_pretrained(tmp_path, vocab, hf_model):
    """save_pretrained's directory (tied decoder left out, config.json beside): heads come from config.json."""
    hf_model.save_pretrained(tmp_path / "hf")
    ours = tmp_path / "ours.pt"
    convert(vocab, tmp_path / "hf" / "model.safetensors", "hf", ours, "uer_ckpt")  # size=base: 12 heads, unused
    payload = load_checkpoint(ours)
    assert payload["config"]["encoder"]["heads_num"] == HEADS
    assert_parity(payload, hf_model)

    back = tmp_path / "back" / "model.safetensors"
    convert(vocab, ours, "uer_ckpt", back, "hf")
    assert_same_tensors(load_file(back), hf_model.state_dict())
    reloaded = BertForPreTraining.from_pretrained(back.parent).eval()  # our config.json + safetensors
    assert_parity(payload, reloaded)

    directory = tmp_path / "from_dir.pt"  # a model directory works as input too
    convert(vocab, tmp_path / "hf", "hf", directory, "uer_ckpt")
    assert_same_tensors(load_checkpoint(directory)["model"], payload["model"])


@torch.no_grad()
def test_hf_bert_model_without_heads(tmp_path, vocab):
    hf = randomized(BertModel(hf_config()), seed=3)
    source = tmp_path / "bert_model.bin"
    torch.save(hf.state_dict(), source)
    ours = tmp_path / "ours.pt"
    convert(vocab, source, "hf", ours, "uer_ckpt", f"model.heads_num={HEADS}")
    payload = load_checkpoint(ours)
    assert "target" not in payload["config"]
    model, kept = payload_model(payload)
    assert sorted(kept) == ["target.nsp_linear_1.bias", "target.nsp_linear_1.weight"]  # the pooler travels along
    src, mask, token_type = inputs()
    theirs = hf(input_ids=src, attention_mask=mask, token_type_ids=token_type)
    hidden = model.backbone(src, (token_type + 1) * mask)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], theirs.last_hidden_state[real], rtol=0, atol=ATOL)

    back = tmp_path / "back.bin"
    convert(vocab, ours, "uer_ckpt", back, "hf")
    assert_same_tensors(torch.load(back, weights_only=True), hf.state_dict())  # BertModel names, no prefix


def test_untied_decoder_survives(capsys, tmp_path, vocab, hf_model):
    """A decoder matrix that is not the word embedding: tie_weights=false, kept exactly; Google's layout refuses it."""
    state = {key: tensor.clone() for key, tensor in hf_model.state_dict().items()}
    state["cls.predictions.decoder.weight"] += 1.0
    source = tmp_path / "untied.bin"
    torch.save(state, source)
    ours = tmp_path / "ours.pt"
    convert(vocab, source, "hf", ours, "uer_ckpt", f"model.heads_num={HEADS}")
    payload = load_checkpoint(ours)
    assert payload["config"]["target"]["tie_weights"] is False
    assert torch.equal(payload["model"]["target.mlm_linear_2.weight"], state["cls.predictions.decoder.weight"])
    back = tmp_path / "back.bin"
    convert(vocab, ours, "uer_ckpt", back, "hf")
    assert_same_tensors(torch.load(back, weights_only=True), state)
    line = failure(capsys, vocab, ours, "uer_ckpt", tmp_path / "tf" / "bert_model.ckpt", "tf")
    assert "target.mlm_linear_2.weight differs from the word embedding" in line
    assert not (tmp_path / "tf").exists() or not any((tmp_path / "tf").iterdir())


# --- UER and this project's checkpoint -------------------------------------------------------

def test_uer_bin_layout_and_round_trips(tmp_path, vocab, hf_model):
    source = tmp_path / "hf.bin"
    torch.save(hf_model.state_dict(), source)
    uer = tmp_path / "uer.bin"
    convert(vocab, source, "hf", uer, "uer")
    state = load_uer_bin(uer)
    segment = state["embedding.segment_embedding.weight"]
    assert segment.shape == (3, H) and not segment[0].any()
    assert torch.equal(segment[1:], hf_model.state_dict()["bert.embeddings.token_type_embeddings.weight"])
    assert torch.equal(state["encoder.transformer.1.self_attn.linear_layers.2.weight"],
                       hf_model.state_dict()["bert.encoder.layer.1.attention.self.value.weight"])
    assert torch.equal(state["target.mlm_linear_2.bias"], hf_model.state_dict()["cls.predictions.bias"])
    assert torch.equal(state["target.nsp_linear_2.weight"], hf_model.state_dict()["cls.seq_relationship.weight"])
    assert "embedding.layer_norm.gamma" in state and len(state) == 5 + 16 * LAYERS + 2 + 6 + 2

    ours = tmp_path / "ours.pt"
    convert(vocab, uer, "uer", ours, "uer_ckpt", *SMALL)
    payload = load_checkpoint(ours)
    assert payload["config"]["encoder"]["layernorm_eps"] == 1e-6  # UER files: the composed config's
    again = tmp_path / "again.bin"
    convert(vocab, ours, "uer_ckpt", again, "uer")
    assert_same_tensors(load_uer_bin(again), state)
    hf_again = tmp_path / "hf_again.bin"
    convert(vocab, uer, "uer", hf_again, "hf")
    assert_same_tensors(torch.load(hf_again, weights_only=True), hf_model.state_dict())


ARCHITECTURES = {
    "bert": [*SMALL, "target=bert"],
    "albert": [*SMALL, "size=albert_base", "model.emb_size=16", "target=albert"],  # shared layer, projection
    "gpt": [*SMALL, "encoder=gpt", "target=lm"],
}


def project_checkpoint(path, vocab, overrides, seed=4):
    """A checkpoint as stage=pretrain writes it, with random weights."""
    cfg = compose_config([*overrides, f"tokenizer.vocab_path={vocab}"])
    model = randomized(build_model(cfg.embedding, cfg.encoder, cfg.target, V), seed=seed)
    save_model_checkpoint(path, model, cfg, trainer={"step": 1})
    return model, {node: OmegaConf.to_container(cfg[node], resolve=True) for node in MODEL_NODES
                   if cfg[node] is not None}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("layernorm, back_overrides", [("uer", ()), ("standard", ("model.layernorm=standard",))])
def test_project_checkpoint_round_trip_through_uer(tmp_path, vocab, name, layernorm, back_overrides):
    """A checkpoint this project wrote -> uer -> uer_ckpt (same composed config): same weights and config.

    A UER file is read with the original's LayerNorm unless model.layernorm says otherwise."""
    original = tmp_path / "step_1.pt"
    model, config = project_checkpoint(original, vocab, [*ARCHITECTURES[name], f"model.layernorm={layernorm}"])
    uer = tmp_path / "model.bin"
    convert(vocab, original, "uer_ckpt", uer, "uer")
    back = tmp_path / "back.pt"
    convert(vocab, uer, "uer", back, "uer_ckpt", *ARCHITECTURES[name], *back_overrides)
    payload = load_checkpoint(back)
    assert_same_tensors(payload["model"], model.state_dict())
    for node in ("model", "embedding", "encoder", "target"):
        assert payload["config"][node] == config[node], node
    assert payload["vocab"] == load_checkpoint(original)["vocab"]


def test_hf_model_directory_loads_offline_with_auto_classes(tmp_path, vocab):
    """tool.output_format=hf into a directory: AutoModel and AutoTokenizer load it and reproduce our model."""
    from transformers import AutoModel, AutoTokenizer

    from uer.io.checkpoint import checkpoint_tokenizer

    original = tmp_path / "step_1.pt"
    model, _ = project_checkpoint(original, vocab, [*ARCHITECTURES["bert"], "tokenizer.do_lower_case=true"])
    out = tmp_path / "exported"
    convert(vocab, original, "uer_ckpt", out, "hf")
    assert {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    hf = AutoModel.from_pretrained(out, local_files_only=True).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ours = checkpoint_tokenizer(load_checkpoint(original), original)
    text = "tok5 TOK17 tok42 tok99 [MASK] tok7"
    ids = hf_tokenizer(text)["input_ids"]
    assert ids == [ours.vocab.cls_id, *ours.encode(text), ours.vocab.sep_id]
    assert ours.vocab.unk_id not in ids
    src = torch.tensor([ids])
    with torch.no_grad():
        theirs = hf(input_ids=src).last_hidden_state
        mine = model.backbone(src, torch.ones_like(src))
    torch.testing.assert_close(theirs, mine, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["albert", "gpt"])
def test_non_bert_models_have_no_tf_layout(capsys, tmp_path, vocab, name):
    """Google's layout holds BERT alone; Hugging Face holds ALBERT (tests/tools/test_convert_families.py) but no
    post-LN causal transformer (UER's GPT): GPT-2 normalises before each sub-layer."""
    original = tmp_path / "step_1.pt"
    project_checkpoint(original, vocab, ARCHITECTURES[name])
    outputs = [(tmp_path / "out" / "bert_model.ckpt", "tf")] + ([(tmp_path / "out" / "model.bin", "hf")]
                                                               if name == "gpt" else [])
    for output, fmt in outputs:
        line = failure(capsys, vocab, original, "uer_ckpt", output, fmt)
        assert str(original) in line and ("ALBERT" in line if name == "albert" else "GPT" in line), line
        assert "tool=convert writes uer_ckpt and uer for every transformer model" in line, line
    if name == "gpt":
        assert "no Hugging Face family holds this model" in line and "gpt2: GPT-2 has no embedding LayerNorm" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- Google TensorFlow ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf():
    try:
        import tensorflow
    except ImportError:
        pytest.skip(TF_SKIP)
    return tensorflow


def google_variables(hf_state: dict) -> dict[str, np.ndarray]:
    """Google's TF1 BERT variable names for a HF BertForPreTraining state dict (written out by hand)."""
    v = {}

    def dense(tf_name, hf_name):
        v[f"{tf_name}/kernel"] = hf_state[f"{hf_name}.weight"].T
        v[f"{tf_name}/bias"] = hf_state[f"{hf_name}.bias"]

    def norm(tf_name, hf_name):
        v[f"{tf_name}/gamma"] = hf_state[f"{hf_name}.weight"]
        v[f"{tf_name}/beta"] = hf_state[f"{hf_name}.bias"]

    for name in ("word", "position", "token_type"):
        v[f"bert/embeddings/{name}_embeddings"] = hf_state[f"bert.embeddings.{name}_embeddings.weight"]
    norm("bert/embeddings/LayerNorm", "bert.embeddings.LayerNorm")
    for layer in range(LAYERS):
        tf_layer, hf_layer = f"bert/encoder/layer_{layer}", f"bert.encoder.layer.{layer}"
        for name in ("query", "key", "value"):
            dense(f"{tf_layer}/attention/self/{name}", f"{hf_layer}.attention.self.{name}")
        dense(f"{tf_layer}/attention/output/dense", f"{hf_layer}.attention.output.dense")
        norm(f"{tf_layer}/attention/output/LayerNorm", f"{hf_layer}.attention.output.LayerNorm")
        dense(f"{tf_layer}/intermediate/dense", f"{hf_layer}.intermediate.dense")
        dense(f"{tf_layer}/output/dense", f"{hf_layer}.output.dense")
        norm(f"{tf_layer}/output/LayerNorm", f"{hf_layer}.output.LayerNorm")
    dense("bert/pooler/dense", "bert.pooler.dense")
    dense("cls/predictions/transform/dense", "cls.predictions.transform.dense")
    norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm")
    v["cls/predictions/output_bias"] = hf_state["cls.predictions.bias"]
    v["cls/seq_relationship/output_weights"] = hf_state["cls.seq_relationship.weight"]  # (2, H), not transposed
    v["cls/seq_relationship/output_bias"] = hf_state["cls.seq_relationship.bias"]
    return {name: tensor.detach().numpy().copy() for name, tensor in v.items()}


def write_google_checkpoint(tf, variables: dict[str, np.ndarray], prefix) -> None:
    """As Google's run_pretraining.py saves: a TF1 Saver, with global_step and Adam slots alongside."""
    with tf.Graph().as_default():
        for name, value in variables.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        tf.compat.v1.get_variable("bert/pooler/dense/kernel/adam_m", initializer=tf.zeros((H, H)))
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix))
    (prefix.parent / "bert_config.json").write_text(json.dumps({"num_attention_heads": HEADS, "hidden_size": H}))


def read_tf_variables(tf, prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_tf_checkpoint_parity_and_back(tmp_path, vocab, hf_model, tf):
    variables = google_variables(hf_model.state_dict())
    prefix = tmp_path / "google" / "bert_model.ckpt"
    write_google_checkpoint(tf, variables, prefix)
    ours = tmp_path / "ours.pt"
    convert(vocab, prefix, "tf", ours, "uer_ckpt")  # heads from bert_config.json
    payload = load_checkpoint(ours)
    assert payload["config"]["encoder"]["heads_num"] == HEADS
    assert_parity(payload, hf_model)

    back = tmp_path / "back" / "bert_model.ckpt"
    convert(vocab, ours, "uer_ckpt", back, "tf")
    written = read_tf_variables(tf, back)
    assert sorted(written) == sorted(variables)
    for name, value in variables.items():
        assert written[name].dtype == np.float32 and np.array_equal(written[name], value), name
    assert json.loads((back.parent / "bert_config.json").read_text())["num_attention_heads"] == HEADS

    hf = tmp_path / "hf" / "model.safetensors"  # Google -> Hugging Face, directly, from the .index file name
    convert(vocab, f"{prefix}.index", "tf", hf, "hf")
    assert_same_tensors(load_file(hf), hf_model.state_dict())
    from_dir = tmp_path / "from_dir.pt"  # the checkpoint's directory: its latest checkpoint
    convert(vocab, prefix.parent, "tf", from_dir, "uer_ckpt")
    assert_same_tensors(load_checkpoint(from_dir)["model"], payload["model"])


def test_tf_not_installed_is_one_line(tmp_path, vocab, hf_model, capsys, monkeypatch):
    source = tmp_path / "hf.bin"
    torch.save(hf_model.state_dict(), source)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    line = failure(capsys, vocab, source, "hf", tmp_path / "out.ckpt", "tf", f"model.heads_num={HEADS}")
    assert "tensorflow" in line and "uer[tf]" in line
    assert list(tmp_path.iterdir()) == [source]


# --- bad input ------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path, hf_model):
    """An HF .bin, a UER .bin, a uer checkpoint and a garbage file, plus an output folder."""
    hf = tmp_path / "hf.bin"
    torch.save(hf_model.state_dict(), hf)
    from uer.io.hf_format import hf_to_uer

    uer = tmp_path / "uer.bin"
    torch.save(hf_to_uer(hf_model.state_dict(), "x")[0], uer)
    ckpt = tmp_path / "model.pt"
    torch.save({"format": "uer-checkpoint", "version": 2, "model": {"w": torch.zeros(1)}, "config": {}}, ckpt)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a model" * 100)
    out = tmp_path / "out"
    out.mkdir()
    return {"hf": hf, "uer": uer, "uer_ckpt": ckpt, "garbage": garbage, "out": out}


def test_missing_input_file(capsys, vocab, files):
    missing = files["out"].parent / "nope.bin"
    line = failure(capsys, vocab, missing, "hf", files["out"] / "x.pt", "uer_ckpt")
    assert str(missing) in line and "not found" in line
    assert not any(files["out"].iterdir())


def test_unknown_format_name(capsys, vocab, files):
    line = failure(capsys, vocab, files["hf"], "keras", files["out"] / "x.pt", "uer_ckpt")
    assert "tool.input_format=keras" in line and "uer, hf, tf, uer_ckpt" in line
    line = failure(capsys, vocab, files["hf"], "hf", files["out"] / "x.pt", "onnx")
    assert "tool.output_format=onnx" in line


def test_missing_tool_keys(capsys, vocab):
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run_stage(compose_config(["stage=tool", "tool=convert", "tool.input_path=x.bin"]))
    err = capsys.readouterr().err
    assert "tool.input_format" in err and "tool.output_path" in err and "tool.output_format" in err


@pytest.mark.parametrize("given, declared, found", [
    ("uer", "hf", "uer"), ("hf", "uer", "hf"), ("uer_ckpt", "tf", "uer_ckpt"), ("hf", "uer_ckpt", "hf"),
    ("uer", "tf", "uer"),
])
def test_file_of_another_format(capsys, vocab, files, given, declared, found):
    out = files["out"] / "x.bin"
    line = failure(capsys, vocab, files[given], declared, out, "uer")
    assert str(files[given]) in line and f"tool.input_format={found}" in line, line
    assert not any(files["out"].iterdir())


def test_corrupt_file(capsys, vocab, files):
    line = failure(capsys, vocab, files["garbage"], "hf", files["out"] / "x.pt", "uer_ckpt")
    assert str(files["garbage"]) in line and "cannot be read" in line
    assert not any(files["out"].iterdir())


def test_incomplete_hf_file_names_the_missing_tensor(capsys, vocab, files, hf_model):
    state = hf_model.state_dict()
    del state["bert.encoder.layer.1.output.dense.weight"]
    torch.save(state, files["hf"])
    line = failure(capsys, vocab, files["hf"], "hf", files["out"] / "x.pt", "uer_ckpt", f"model.heads_num={HEADS}")
    assert "bert.encoder.layer.1.output.dense.weight" in line and str(files["hf"]) in line
    assert not any(files["out"].iterdir())


def test_vocabulary_size_mismatch_keeps_old_output(capsys, files):
    from uer_testing import VOCAB

    out = files["out"] / "x.pt"
    out.write_bytes(b"earlier output")
    line = failure(capsys, VOCAB, files["hf"], "hf", out, "uer_ckpt", f"model.heads_num={HEADS}")
    assert "21128" in line and "100" in line and str(VOCAB) in line
    assert out.read_bytes() == b"earlier output" and [p.name for p in files["out"].iterdir()] == ["x.pt"]


def test_heads_that_do_not_divide_hidden(capsys, vocab, files):
    line = failure(capsys, vocab, files["hf"], "hf", files["out"] / "x.pt", "uer_ckpt")  # size=base: 12 heads
    assert "heads_num=12" in line and "model.heads_num=N" in line
    assert not any(files["out"].iterdir())


def test_hf_output_needs_a_known_suffix(capsys, vocab, files):
    line = failure(capsys, vocab, files["uer"], "uer", files["out"] / "model.pt", "hf")
    assert ".safetensors or .bin" in line
    assert not any(files["out"].iterdir())


def test_failed_write_leaves_nothing(capsys, vocab, files, monkeypatch):
    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(hf_format, "save_file", broken)
    line = failure(capsys, vocab, files["uer"], "uer", files["out"] / "model.safetensors", "hf")
    assert f"cannot write {files['out'] / 'model.safetensors'}: disk full" in line
    assert not any(files["out"].iterdir())


# --- as a user runs it ----------------------------------------------------------------------

@pytest.mark.e2e
def test_documented_command(tmp_path, vocab, hf_model):
    hf_model.save_pretrained(tmp_path / "bert")
    out = tmp_path / "bert.pt"
    proc = run_main(["stage=tool", "tool=convert", "tool.input_format=hf",
                     f"tool.input_path={tmp_path / 'bert' / 'model.safetensors'}", "tool.output_format=uer_ckpt",
                     f"tool.output_path={out}", f"tokenizer.vocab_path={vocab}"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert_parity(load_checkpoint(out), hf_model)
    bad = run_main(["stage=tool", "tool=convert", "tool.input_format=uer", f"tool.input_path={out}",
                    "tool.output_format=hf", f"tool.output_path={tmp_path / 'x.bin'}"], tmp_path / "run2")
    assert bad.returncode == 2 and len(error_lines(bad)) == 1, bad.stderr
    assert "tool.input_format=uer_ckpt" in error_lines(bad)[0] and not (tmp_path / "x.bin").exists()


def test_a_model_without_transformer_layers_is_refused_with_what_converts(capsys, tmp_path, vocab):
    """An LSTM checkpoint: the refusal says what the converter writes for which model, not a wrong list."""
    original = tmp_path / "step_1.pt"
    project_checkpoint(original, vocab, [*SMALL, "encoder=lstm", "target=lm"])
    for output, fmt in ((tmp_path / "out" / "model.bin", "uer"), (tmp_path / "out" / "model.safetensors", "hf")):
        line = failure(capsys, vocab, original, "uer_ckpt", output, fmt)
        assert "has no transformer layers" in line and "other encoders (lstm, gru, cnn, ...) have no converted " \
                                                       "form" in line, line
        assert "only transformer models (BERT, ALBERT, GPT) can be converted" not in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
