"""build_vocab, diff_vocab and dynamic_vocab_adapter on small files, checking the files they write."""

from __future__ import annotations

import json

import pytest
import torch

from uer.io.checkpoint import load_checkpoint
from uer.io.uer_format import from_uer_state_dict, load_uer_bin, save_uer_bin
from uer.tokenizers import Vocab
from uer.tools.model_loading import load_model
from tool_testing import (CHARS, SPECIALS, make_checkpoint, make_model, no_temp_files, run_tool, save_pt,
                               tool_config, tool_error, write_vocab)

CORPUS = "北京是中国的首都\n上海是一座大城市\n\n北京 天气 很好\n我们 喜欢 北京\n"


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def vocab_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_build_vocab_counts_characters(tmp_path, corpus):
    out = tmp_path / "vocab.txt"
    result = run_tool("build_vocab", "tokenizer=char", f"tool.corpus_path={corpus}", f"tool.output_path={out}")
    assert result == str(out)
    lines = vocab_lines(out)
    assert lines[:5] == SPECIALS
    counts = {}
    for char in CORPUS:
        if not char.isspace():
            counts[char] = counts.get(char, 0) + 1
    assert lines[5:] == sorted(counts, key=lambda c: (-counts[c], c))
    assert lines[5:8] == ["京", "北", "是"]  # 3, 3, 2 (ties in code point order) ...
    Vocab.from_file(out)  # a valid vocab file


def test_build_vocab_min_count_size_and_space_tokens(tmp_path, corpus):
    out = tmp_path / "v.txt"
    run_tool("build_vocab", "tokenizer=space", f"tool.corpus_path={corpus}", f"tool.output_path={out}",
             "tool.min_count=2")
    assert vocab_lines(out) == [*SPECIALS, "北京"]
    run_tool("build_vocab", "tokenizer=char", f"tool.corpus_path={corpus}", f"tool.output_path={out}",
             "tool.vocab_size=7")
    assert vocab_lines(out) == [*SPECIALS, "京", "北"]


def test_build_vocab_is_identical_for_any_number_of_processes(tmp_path, monkeypatch):
    import uer.tools.vocab_tools as vocab_tools

    monkeypatch.setattr(vocab_tools, "PIECE_BYTES", 64)  # many pieces from a small corpus
    corpus = tmp_path / "big.txt"
    lines = ["".join(CHARS[(i * 7 + j) % len(CHARS)] for j in range(i % 13 + 1)) for i in range(300)]
    corpus.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    outputs = []
    for processes in (1, 3):
        out = tmp_path / f"v{processes}.txt"
        run_tool("build_vocab", "tokenizer=char", f"tool.corpus_path={corpus}", f"tool.output_path={out}",
                 f"tool.processes_num={processes}")
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert set(vocab_lines(tmp_path / "v1.txt")[5:]) == set("".join(lines))


def test_build_vocab_bad_inputs(tmp_path, capsys, corpus):
    out = tmp_path / "v.txt"
    line = tool_error(capsys, "build_vocab", f"tool.corpus_path={corpus}", f"tool.output_path={out}")
    assert "WordPiece" in line and "tokenizer=char" in line
    line = tool_error(capsys, "build_vocab", "tokenizer=char", f"tool.corpus_path={tmp_path / 'no.txt'}")
    assert "no.txt" in line and "tool.corpus_path" in line
    line = tool_error(capsys, "build_vocab", "tokenizer=char")
    assert "tool.corpus_path" in line
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好\n好\n".encode() + b"\xff\xfe\n")
    line = tool_error(capsys, "build_vocab", "tokenizer=char", f"tool.corpus_path={bad}", f"tool.output_path={out}")
    assert f"{bad}:3" in line and "UTF-8" in line
    line = tool_error(capsys, "build_vocab", "tokenizer=char", f"tool.corpus_path={corpus}", "tool.vocab_size=3")
    assert "tool.vocab_size=3" in line
    assert not out.exists() and no_temp_files(tmp_path)


def test_diff_vocab(tmp_path, capsys):
    old = write_vocab(tmp_path / "old.txt", [*SPECIALS, "a", "b", "c"])
    new = write_vocab(tmp_path / "new.txt", [*SPECIALS, "c", "b", "d"])
    out = tmp_path / "diff.json"
    report = run_tool("diff_vocab", f"tool.vocab_path={old}", f"tool.new_vocab_path={new}", f"tool.output_path={out}")
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == report
    assert (report["shared"], report["same_id"]) == (7, 6)
    assert report["only_in_vocab"] == ["a"] and report["only_in_new_vocab"] == ["d"]
    line = tool_error(capsys, "diff_vocab", f"tool.vocab_path={old}", f"tool.new_vocab_path={tmp_path / 'x.txt'}")
    assert "x.txt" in line and "tool.new_vocab_path" in line
    line = tool_error(capsys, "diff_vocab", f"tool.new_vocab_path={new}")
    assert "tool.vocab_path" in line


NEW_TOKENS = [*SPECIALS, "新", *reversed(CHARS[:10]), "词"]  # 10 shared chars, reordered; 2 new ones


def check_adapted(state, old_state, old_tokens, new_tokens):
    old_ids = {t: i for i, t in enumerate(old_tokens)}
    for key in ("backbone.embedding.word_embedding.weight", "target.mlm_linear_2.weight", "target.mlm_linear_2.bias"):
        new_rows, old_rows = state[key], old_state[key]
        assert new_rows.shape[0] == len(new_tokens)
        for i, token in enumerate(new_tokens):
            if token in old_ids:
                assert torch.equal(new_rows[i], old_rows[old_ids[token]]), (key, token)
    assert torch.equal(state["target.mlm_linear_2.weight"], state["backbone.embedding.word_embedding.weight"])
    fresh = state["backbone.embedding.word_embedding.weight"][NEW_TOKENS.index("新")]
    assert 0 < fresh.std() < 0.05
    assert float(state["target.mlm_linear_2.bias"][NEW_TOKENS.index("新")]) == 0.0


def test_adapter_keeps_rows_of_shared_tokens(tmp_path):
    old_vocab = write_vocab(tmp_path / "vocab.txt")
    new_vocab = write_vocab(tmp_path / "new_vocab.txt", NEW_TOKENS)
    cfg, model, tokenizer = make_model(old_vocab)
    with torch.no_grad():
        model.target.mlm_linear_2.bias.normal_()  # distinct rows to compare
    path = save_pt(tmp_path / "m.pt", cfg, model, tokenizer)
    out = tmp_path / "adapted.pt"
    run_tool("dynamic_vocab_adapter", f"tool.input_path={path}", f"tool.new_vocab_path={new_vocab}",
             f"tool.output_path={out}")
    payload = load_checkpoint(out)
    check_adapted(payload["model"], model.state_dict(), SPECIALS + CHARS, NEW_TOKENS)
    assert payload["vocab"]["vocab_size"] == len(NEW_TOKENS)
    loaded = load_model(tool_config("check_model", f"tool.input_path={out}"))  # the new vocab is its tokenizer
    assert loaded.tokenizer.vocab.tokens == tuple(NEW_TOKENS)
    # the same model through a UER .bin, its vocab given explicitly
    save_uer_bin(model, tmp_path / "m.bin")
    run_tool("dynamic_vocab_adapter", f"tool.input_path={tmp_path / 'm.bin'}", f"tool.vocab_path={old_vocab}",
             f"tool.new_vocab_path={new_vocab}", f"tool.output_path={tmp_path / 'adapted.bin'}")
    state = from_uer_state_dict(load_uer_bin(tmp_path / "adapted.bin"))
    check_adapted(state, model.state_dict(), SPECIALS + CHARS, NEW_TOKENS)


def test_adapter_bad_inputs(tmp_path, capsys):
    old_vocab = write_vocab(tmp_path / "vocab.txt")
    new_vocab = write_vocab(tmp_path / "new.txt", NEW_TOKENS)
    path, model = make_checkpoint(tmp_path / "m.pt", old_vocab)
    save_uer_bin(model, tmp_path / "m.bin")
    out = tmp_path / "out.pt"
    line = tool_error(capsys, "dynamic_vocab_adapter", f"tool.input_path={tmp_path / 'm.bin'}",
                      f"tool.new_vocab_path={new_vocab}", f"tool.output_path={out}")
    assert "m.bin" in line and "tool.vocab_path" in line
    line = tool_error(capsys, "dynamic_vocab_adapter", f"tool.input_path={path}",
                      f"tool.new_vocab_path={tmp_path / 'missing.txt'}", f"tool.output_path={out}")
    assert "missing.txt" in line and "tool.new_vocab_path" in line
    line = tool_error(capsys, "dynamic_vocab_adapter", f"tool.input_path={path}", f"tool.vocab_path={new_vocab}",
                      f"tool.new_vocab_path={new_vocab}", f"tool.output_path={out}")
    assert "m.pt" in line and "carries its vocabulary" in line and "tool.vocab_path" in line
    line = tool_error(capsys, "dynamic_vocab_adapter", f"tool.input_path={tmp_path / 'gone.pt'}",
                      f"tool.new_vocab_path={new_vocab}")
    assert "gone.pt" in line
    assert not out.exists() and no_temp_files(tmp_path)
