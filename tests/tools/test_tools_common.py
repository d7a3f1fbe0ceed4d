"""The model scripts' shared loader (uer/tools/model_loading.py) and helpers the other test_tools_* files use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uer.cli import preflight
from uer.errors import UerError
from uer.io.uer_format import save_uer_bin
from uer.models import build_model
from uer.stages import run_stage
from uer.tokenizers import build_tokenizer
from uer.tools.model_loading import load_model
from uer_testing import SMALL, compose_config, error_lines, run_main, save_model_checkpoint

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("北京是中国的首都上海一座大城市天气很好我们喜欢读书这本有意思")


def write_vocab(path: Path, tokens=None) -> Path:
    path.write_text("".join(f"{t}\n" for t in (tokens or SPECIALS + CHARS)), encoding="utf-8")
    return path


def arch(*extra: str, vocab: Path) -> list[str]:
    """Overrides for a tiny model over the char vocab ``vocab``."""
    return ["tokenizer=char", f"tokenizer.vocab_path={vocab}", "size=tiny", *SMALL, "hardware.num_threads=1", *extra]


def make_model(vocab: Path, *extra: str, seed: int = 0):
    cfg = compose_config(arch(*extra, vocab=vocab))
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(cfg.tokenizer)
    return cfg, build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab)), tokenizer


def save_pt(path: Path, cfg, model, tokenizer=None) -> Path:
    return save_model_checkpoint(path, model, cfg)


def make_checkpoint(path: Path, vocab: Path, *extra: str, seed: int = 0):
    """A random tiny model saved as our .pt (``extra``: e.g. encoder=gpt target=lm); returns (path, model)."""
    cfg, model, _ = make_model(vocab, *extra, seed=seed)
    return save_model_checkpoint(path, model, cfg), model.eval()


def tool_config(name: str, *overrides: str, vocab: Path | None = None):
    extra = arch(vocab=vocab) if vocab is not None else ["hardware.num_threads=1"]
    return compose_config(["stage=tool", f"tool={name}", *extra, *overrides])


def run_tool(name: str, *overrides: str, vocab: Path | None = None):
    return run_stage(tool_config(name, *overrides, vocab=vocab))


def tool_error(capsys, name: str, *overrides: str, vocab: Path | None = None) -> str:
    """The one ``error:`` line a failing tool prints (it must exit with status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_tool(name, *overrides, vocab=vocab)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------- tests


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
    torch.save({**payload, "model": state, "config": config}, tmp_path / "best.pt")
    loaded = load_model(tool_config("extract_feature", f"tool.input_path={tmp_path}"))  # a directory with best.pt
    assert loaded.path.name == "best.pt" and loaded.target is None
    src = torch.tensor([[2, 7, 8, 3]])
    torch.testing.assert_close(loaded.backbone(src, torch.ones_like(src)), model.backbone(src, torch.ones_like(src)))
    line = tool_error(capsys, "cloze_test", f"tool.input_path={tmp_path / 'best.pt'}", "tool.text='北[MASK]'")
    assert "best.pt" in line and "fine-tuned" in line
