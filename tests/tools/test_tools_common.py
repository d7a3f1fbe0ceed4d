"""The model scripts' shared loader (uer/tools/model_loading.py)."""

from __future__ import annotations

import pytest
import torch

from tool_testing import CHARS, SPECIALS, make_checkpoint, make_model, tool_config, tool_error, write_vocab
from uer.cli import preflight
from uer.errors import UerError
from uer.io.checkpoint import sealed
from uer.io.uer_format import save_uer_bin
from uer.tools.model_loading import load_model
from uer_testing import error_lines, run_main


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


@pytest.mark.parametrize("layernorm, bin_overrides", [("uer", ()), ("standard", ("model.layernorm=standard",))])
def test_loads_pt_and_bin_into_equal_models(tmp_path, vocab, layernorm, bin_overrides):
    """A .bin is read with the original's LayerNorm unless told otherwise; either way it is the same model."""
    path, model = make_checkpoint(tmp_path / "m.pt", vocab, f"model.layernorm={layernorm}")
    save_uer_bin(model, tmp_path / "m.bin")
    src = torch.tensor([[2, 7, 8, 9, 3]])
    expected = model.backbone(src, torch.ones_like(src))
    from_pt = load_model(tool_config("check_model", f"tool.input_path={path}"))
    assert from_pt.kind == "pt" and from_pt.tokenizer.identity()["vocab_size"] == len(SPECIALS + CHARS)
    assert from_pt.config["embedding"]["layernorm"] == layernorm
    torch.testing.assert_close(from_pt.backbone(src, torch.ones_like(src)), expected)
    from_bin = load_model(tool_config("check_model", f"tool.input_path={tmp_path / 'm.bin'}", *bin_overrides,
                                      vocab=vocab))
    assert from_bin.kind == "bin" and not from_bin.missing
    assert from_bin.config["embedding"]["layernorm"] == layernorm
    torch.testing.assert_close(from_bin.backbone(src, torch.ones_like(src)), expected)


def test_directory_means_newest_step_checkpoint(tmp_path, vocab):
    (tmp_path / "run").mkdir()
    make_checkpoint(tmp_path / "run" / "step_10.pt", vocab, seed=1)
    _, newest = make_checkpoint(tmp_path / "run" / "step_20.pt", vocab, seed=2)
    loaded = load_model(tool_config("check_model", f"tool.input_path={tmp_path / 'run'}"))
    assert loaded.path.name == "step_20.pt"
    torch.testing.assert_close(loaded.backbone.embedding.word_embedding.weight,
                               newest.backbone.embedding.word_embedding.weight)


def test_missing_model_file_is_one_line(tmp_path, capsys, vocab):
    line = tool_error(capsys, "extract_embedding", f"tool.input_path={tmp_path / 'nope.pt'}")
    assert "nope.pt" in line and "tool.input_path" in line and "not found" in line
    line = tool_error(capsys, "extract_embedding")
    assert "tool.input_path" in line


def test_corrupt_model_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    line = tool_error(capsys, "check_model", f"tool.input_path={tmp_path / 'bad.pt'}")
    assert "bad.pt" in line and "corrupt" in line


def test_bin_with_another_vocab_size_names_both(tmp_path, capsys, vocab):
    _, model = make_checkpoint(tmp_path / "m.pt", vocab)
    save_uer_bin(model, tmp_path / "m.bin")
    small = write_vocab(tmp_path / "small.txt", SPECIALS + CHARS[:5])
    line = tool_error(capsys, "extract_feature", f"tool.input_path={tmp_path / 'm.bin'}",
                      "tool.text='北京'", vocab=small)
    assert "m.bin" in line and "small.txt" in line and "tokenizer.vocab_path" in line


def test_unknown_tool_lists_the_tools():
    with pytest.raises(UerError) as err:
        preflight(["tool=nope"], multirun=False)
    line = str(err.value)
    assert line.startswith("tool=nope is not an option")
    for name in ("average_model", "build_vocab", "cloze_test", "generate", "topn_words_dep"):
        assert name in line


def test_command_line_as_documented(tmp_path, vocab):
    path, model = make_checkpoint(tmp_path / "m.pt", vocab)
    out = tmp_path / "emb.npy"
    proc = run_main(["stage=tool", "tool=extract_embedding", f"tool.input_path={path}",
                     f"tool.output_path={out}"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    import numpy as np

    np.testing.assert_array_equal(np.load(out), model.backbone.embedding.word_embedding.weight.detach().numpy())
    proc = run_main(["stage=tool", "tool=extract_embedding", f"tool.input_path={tmp_path / 'none.pt'}"],
                    tmp_path / "run2")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1 and "none.pt" in error_lines(proc)[0]


def test_fine_tuned_checkpoint_gives_its_backbone(tmp_path, capsys, vocab):
    path, model = make_checkpoint(tmp_path / "m.pt", vocab)
    payload = torch.load(path, weights_only=True)
    state = {k: v for k, v in payload["model"].items() if k.startswith("backbone.")}
    state["output_layer_2.weight"] = torch.zeros(2, 32)
    config = {**{k: v for k, v in payload["config"].items() if k != "target"}, "task": {"type": "classifier"}}
    torch.save(sealed({**payload, "model": state, "config": config}), tmp_path / "best.pt")
    loaded = load_model(tool_config("extract_feature", f"tool.input_path={tmp_path}"))  # a directory with best.pt
    assert loaded.path.name == "best.pt" and loaded.target is None
    src = torch.tensor([[2, 7, 8, 3]])
    torch.testing.assert_close(loaded.backbone(src, torch.ones_like(src)), model.backbone(src, torch.ones_like(src)))
    line = tool_error(capsys, "cloze_test", f"tool.input_path={tmp_path / 'best.pt'}", "tool.text='北[MASK]'")
    assert "best.pt" in line and "fine-tuned" in line
