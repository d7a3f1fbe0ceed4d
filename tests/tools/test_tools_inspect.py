"""check_model, extract_embedding and extract_feature: their files hold the model's real numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uer.io.checkpoint import load_checkpoint, sealed
from uer.io.uer_format import save_uer_bin
from tool_testing import CHARS, SPECIALS, make_checkpoint, no_temp_files, run_tool, tool_error, write_vocab


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


@pytest.fixture()
def checkpoint(tmp_path, vocab):
    return make_checkpoint(tmp_path / "m.pt", vocab)


def test_check_model_lists_every_tensor(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / "model.tsv"
    summary = run_tool("check_model", f"tool.input_path={path}", f"tool.output_path={out}")
    state = model.state_dict()
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "name\tshape\tdtype\tnumel" and len(rows) == len(state) + 1
    name, shape, dtype, numel = rows[1 + list(state).index("backbone.embedding.word_embedding.weight")].split("\t")
    rows_num = len(SPECIALS + CHARS)
    assert (shape, dtype, int(numel)) == (f"{rows_num}x32", "float32", rows_num * 32)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())  # tied weights counted once
    assert summary["config"]["encoder"] == "transformer" and summary["non_finite"] == []
    save_uer_bin(model, tmp_path / "m.bin")
    assert run_tool("check_model", f"tool.input_path={tmp_path / 'm.bin'}")["format"] == "bin"


def test_check_model_finds_nan_and_unfitting_weights(tmp_path, capsys, checkpoint):
    path, _ = checkpoint
    payload = load_checkpoint(path)
    payload["model"]["backbone.encoder.transformer.1.feed_forward.linear_2.bias"][3] = float("nan")
    torch.save(sealed(payload), tmp_path / "nan.pt")
    out = tmp_path / "nan.tsv"
    line = tool_error(capsys, "check_model", f"tool.input_path={tmp_path / 'nan.pt'}", f"tool.output_path={out}")
    assert "nan.pt" in line and "transformer.1.feed_forward.linear_2.bias" in line
    assert out.is_file()  # the report is still written
    payload["config"]["encoder"]["layers_num"] = 3
    torch.save(sealed(payload), tmp_path / "odd.pt")
    line = tool_error(capsys, "check_model", f"tool.input_path={tmp_path / 'odd.pt'}")
    assert "odd.pt" in line and "does not fit" in line
    assert 'Missing key(s) in state_dict: "backbone.encoder.transformer.2.' in line  # names the tensors, not torch's header


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_extract_embedding_is_the_word_embedding(tmp_path, checkpoint, suffix):
    path, model = checkpoint
    out = tmp_path / f"emb{suffix}"
    run_tool("extract_embedding", f"tool.input_path={path}", f"tool.output_path={out}")
    matrix = np.load(out) if suffix == ".npy" else torch.load(out).numpy()
    np.testing.assert_array_equal(matrix, model.backbone.embedding.word_embedding.weight.detach().numpy())


def test_extract_embedding_bad_output(tmp_path, capsys, checkpoint):
    path, _ = checkpoint
    line = tool_error(capsys, "extract_embedding", f"tool.input_path={path}", f"tool.output_path={tmp_path / 'e.csv'}")
    assert "e.csv" in line and ".npy" in line
    assert no_temp_files(tmp_path)


SENTENCES = ["北京是中国的首都", "上海是一座大城市", "天气很好"]


def reference_features(model, vocab_ids, pooling):
    rows = []
    for sentence in SENTENCES:
        ids = torch.tensor([[2, *[vocab_ids[c] for c in sentence], 3]])
        with torch.no_grad():
            hidden = model.backbone(ids, torch.ones_like(ids))[0]
        pooled = {"mean": hidden.mean(0), "first": hidden[0], "last": hidden[-1], "max": hidden.max(0).values}
        rows.append(pooled[pooling])
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("pooling", ["mean", "first", "last", "max"])
def test_extract_feature_pools_last_layer_states(tmp_path, vocab, checkpoint, pooling):
    path, model = checkpoint
    test = tmp_path / "test.txt"
    test.write_text(SENTENCES[0] + "\n\n" + "\n".join(SENTENCES[1:]) + "\n", encoding="utf-8")  # a blank line
    out = tmp_path / "features.npy"
    run_tool("extract_feature", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={out}",
             f"tool.pooling={pooling}", "tool.batch_size=2")  # one batch pads the shorter row
    ids = {t: i for i, t in enumerate(vocab.read_text(encoding="utf-8").splitlines())}
    features = np.load(out)
    assert features.shape == (3, 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, reference_features(model, ids, pooling), atol=1e-5)


def test_extract_feature_per_token_as_the_original(tmp_path, vocab, checkpoint):
    """tool.pooling=none: every position's hidden states, padded with zeros to tool.seq_length."""
    path, model = checkpoint
    test = tmp_path / "test.txt"
    test.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "tokens.npy"
    run_tool("extract_feature", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={out}",
             "tool.pooling=none", "tool.seq_length=12", "tool.batch_size=2")
    ids = {t: i for i, t in enumerate(vocab.read_text(encoding="utf-8").splitlines())}
    features = np.load(out)
    assert features.shape == (3, 12, 32) and features.dtype == np.float32
    for row, sentence in enumerate(SENTENCES):
        src = torch.tensor([[2, *[ids[c] for c in sentence], 3]])
        with torch.no_grad():
            hidden = model.backbone(src, torch.ones_like(src))[0].numpy()
        np.testing.assert_allclose(features[row, :src.size(1)], hidden, atol=1e-5)
        assert not features[row, src.size(1):].any()


def test_extract_feature_bad_inputs(tmp_path, capsys, checkpoint):
    path, _ = checkpoint
    line = tool_error(capsys, "extract_feature", f"tool.input_path={path}", f"tool.test_path={tmp_path / 'no.txt'}")
    assert "no.txt" in line and "tool.test_path" in line
    line = tool_error(capsys, "extract_feature", f"tool.input_path={path}")
    assert "tool.test_path" in line and "tool.text" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    line = tool_error(capsys, "extract_feature", f"tool.input_path={path}", f"tool.test_path={empty}")
    assert "empty.txt" in line and "no non-blank line" in line
    line = tool_error(capsys, "extract_feature", f"tool.input_path={path}", "tool.text=abc", "tool.pooling=sum")
    assert "tool.pooling=sum" in line and "none" in line
    assert not (tmp_path / "features.npy").exists()


@pytest.mark.parametrize("encoder, target", [("lstm", "lm"), ("bilstm", "bilm"), ("gru", "lm"), ("cnn", "lm"),
                                             ("gatedcnn", "lm"), ("rcnn", "lm"), ("crnn", "lm")])
def test_extract_feature_on_a_model_without_positions(tmp_path, vocab, encoder, target):
    """RNN/CNN encoders with embedding=word (no position embedding, so no max_seq_length) give their
    features as the original's extract_features.py did: every row read at its own length."""
    path, model = make_checkpoint(tmp_path / "m.pt", vocab, f"encoder={encoder}", f"target={target}",
                                  "embedding=word")
    test = tmp_path / "test.txt"
    test.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "features.npy"
    run_tool("extract_feature", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={out}",
             "tool.pooling=mean", "tool.batch_size=1")
    ids = {t: i for i, t in enumerate(vocab.read_text(encoding="utf-8").splitlines())}
    np.testing.assert_allclose(np.load(out), reference_features(model, ids, "mean"), atol=1e-5)
