"""tool=average_model: the averaged weights are the element-wise mean; mismatches are one clear line."""

from __future__ import annotations

import pytest
import torch

from uer.io.checkpoint import load_checkpoint
from uer.io.uer_format import from_uer_state_dict, load_uer_bin, save_uer_bin
from uer.tools.model_loading import load_model
from tool_testing import make_checkpoint, no_temp_files, run_tool, tool_config, tool_error, write_vocab


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


def test_average_of_checkpoints_is_the_mean(tmp_path, vocab):
    paths, models = zip(*(make_checkpoint(tmp_path / f"m{i}.pt", vocab, seed=i) for i in range(3)))
    out = tmp_path / "avg" / "avg.pt"
    assert run_tool("average_model", f"tool.input_paths=[{','.join(map(str, paths))}]",
                    f"tool.output_path={out}") == str(out)
    payload = load_checkpoint(out)
    states = [m.state_dict() for m in models]
    assert payload["model"].keys() == states[0].keys()
    for key, tensor in payload["model"].items():
        torch.testing.assert_close(tensor, sum(s[key] for s in states) / 3, rtol=0, atol=1e-7)
    assert payload["config"] == load_checkpoint(paths[0])["config"] and payload["trainer"] is None
    loaded = load_model(tool_config("check_model", f"tool.input_path={out}"))  # rebuilds and runs
    src = torch.tensor([[2, 5, 6, 3]])
    assert loaded.backbone(src, torch.ones_like(src)).shape == (1, 4, 32)
    assert no_temp_files(out.parent)


def test_average_of_uer_bins_writes_a_bin(tmp_path, vocab):
    models = [make_checkpoint(tmp_path / f"m{i}.pt", vocab, seed=i)[1] for i in range(2)]
    for i, model in enumerate(models):
        save_uer_bin(model, tmp_path / f"m{i}.bin")
    out = tmp_path / "avg.bin"
    run_tool("average_model", f"tool.input_paths=[{tmp_path / 'm0.bin'},{tmp_path / 'm1.bin'}]",
             f"tool.output_path={out}")
    average = from_uer_state_dict(load_uer_bin(out))
    for key, tensor in models[0].state_dict().items():
        torch.testing.assert_close(average[key], (tensor + models[1].state_dict()[key]) / 2, rtol=0, atol=1e-7)


def test_one_model_averages_to_itself(tmp_path, vocab):
    path, model = make_checkpoint(tmp_path / "m.pt", vocab)
    run_tool("average_model", f"tool.input_paths=[{path}]", f"tool.output_path={tmp_path / 'same.pt'}")
    for key, tensor in load_checkpoint(tmp_path / "same.pt")["model"].items():
        assert torch.equal(tensor, model.state_dict()[key])


def test_bad_inputs(tmp_path, capsys, vocab):
    a, _ = make_checkpoint(tmp_path / "a.pt", vocab)
    b, _ = make_checkpoint(tmp_path / "b.pt", vocab, "model.feedforward_size=48")
    out = tmp_path / "out.pt"
    line = tool_error(capsys, "average_model", f"tool.input_paths=[{a},{b}]", f"tool.output_path={out}")
    assert "a.pt" in line and "b.pt" in line and "feed_forward.linear_1.weight" in line and "(64, 32)" in line
    line = tool_error(capsys, "average_model", f"tool.output_path={out}")
    assert "tool.input_paths" in line
    line = tool_error(capsys, "average_model", f"tool.input_paths=[{a},{tmp_path / 'gone.pt'}]",
                      f"tool.output_path={out}")
    assert "gone.pt" in line and "not found" in line
    c, _ = make_checkpoint(tmp_path / "c.pt", vocab, "model.layers_num=3")
    line = tool_error(capsys, "average_model", f"tool.input_paths=[{a},{c}]", f"tool.output_path={out}")
    assert "a.pt" in line and "c.pt" in line and "transformer.2." in line
    assert not out.exists() and no_temp_files(tmp_path)
