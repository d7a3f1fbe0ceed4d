"""topn_words_indep / topn_words_dep: nearest tokens by cosine, checked against a brute-force computation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tool_testing import CHARS, SPECIALS, make_model, run_tool, save_pt, tool_error, write_vocab

TOKENS = SPECIALS + CHARS
ID = {t: i for i, t in enumerate(TOKENS)}


def twin(tmp_path, scale: float):
    """A model in which 京's embedding row is 北's times ``scale`` (cosine 1)."""
    vocab = write_vocab(tmp_path / "vocab.txt")
    cfg, model, tokenizer = make_model(vocab, "model.dropout=0.0")
    with torch.no_grad():
        rows = model.backbone.embedding.word_embedding.weight
        rows[ID["京"]] = rows[ID["北"]] * scale
    return save_pt(tmp_path / "m.pt", cfg, model.eval(), tokenizer), model


@pytest.fixture()
def twin_model(tmp_path):
    return twin(tmp_path, 2.0)  # a different vector in the same direction


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_topn_words_indep(tmp_path, twin_model):
    path, model = twin_model
    out = tmp_path / "n.jsonl"
    run_tool("topn_words_indep", f"tool.input_path={path}", "tool.text='北 首 首都'", "tool.topn=5",
             f"tool.output_path={out}")
    results = read_jsonl(out)
    assert [r["word"] for r in results] == ["北", "首", "首都"]
    assert results[0]["neighbours"][0][0] == "京" and results[0]["neighbours"][0][1] == pytest.approx(1.0, abs=1e-5)
    weights = F.normalize(model.backbone.embedding.word_embedding.weight.detach(), dim=-1)
    scores = weights @ weights[ID["首"]]
    scores[[*range(len(SPECIALS)), ID["首"]]] = -2
    expected = [TOKENS[i] for i in scores.topk(5).indices.tolist()]
    assert [token for token, _ in results[1]["neighbours"]] == expected
    assert [score for _, score in results[1]["neighbours"]] == pytest.approx(scores.topk(5).values.tolist(), abs=1e-5)
    assert results[2] == {"word": "首都", "token": None, "neighbours": []}  # two tokens: not a vocabulary word


def test_topn_words_dep(tmp_path):
    path, model = twin(tmp_path, 1.0)
    sentence = "北京是中国的首都"
    test = tmp_path / "dep.txt"
    test.write_text(f"{sentence}\t北\n{sentence}\t国\n", encoding="utf-8")
    out = tmp_path / "dep.jsonl"
    run_tool("topn_words_dep", f"tool.input_path={path}", f"tool.test_path={test}", "tool.topn=4",
             "tool.batch_size=7", f"tool.output_path={out}")
    results = read_jsonl(out)
    assert [(r["sentence"], r["word"]) for r in results] == [(sentence, "北"), (sentence, "国")]
    # 京 with 北's row gives the very same hidden state
    assert results[0]["neighbours"][0][0] == "京" and results[0]["neighbours"][0][1] == pytest.approx(1.0, abs=1e-5)
    ids = torch.tensor([[2, *[ID[c] for c in sentence], 3]])
    position = 1 + sentence.index("国")
    with torch.no_grad():
        reference = model.backbone(ids, torch.ones_like(ids))[0, position]
        scores = torch.full((len(TOKENS),), -2.0)
        for candidate in range(len(SPECIALS), len(TOKENS)):
            if candidate != ID["国"]:
                swapped = ids.clone()
                swapped[0, position] = candidate
                hidden = model.backbone(swapped, torch.ones_like(swapped))[0, position]
                scores[candidate] = F.cosine_similarity(hidden, reference, dim=0)
    top = scores.topk(4)
    assert [token for token, _ in results[1]["neighbours"]] == [TOKENS[i] for i in top.indices.tolist()]
    assert [score for _, score in results[1]["neighbours"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_neighbours_bad_inputs(tmp_path, capsys, twin_model):
    path, _ = twin_model
    test = tmp_path / "dep.txt"
    test.write_text("北京是中国的首都\t北\n北京是中国的首都 北\n", encoding="utf-8")
    line = tool_error(capsys, "topn_words_dep", f"tool.input_path={path}", f"tool.test_path={test}")
    assert f"{test}:2" in line and "<TAB>" in line
    test.write_text("北京是中国的首都\t天\n", encoding="utf-8")
    line = tool_error(capsys, "topn_words_dep", f"tool.input_path={path}", f"tool.test_path={test}")
    assert f"{test}:1" in line and "'天'" in line
    line = tool_error(capsys, "topn_words_indep", f"tool.input_path={path}")
    assert "tool.text" in line and "tool.test_path" in line
    line = tool_error(capsys, "topn_words_indep", f"tool.input_path={path}", "tool.text=x", "tool.topn=0")
    assert "tool.topn=0" in line
    line = tool_error(capsys, "topn_words_indep", f"tool.input_path={tmp_path / 'x.pt'}", "tool.text=x")
    assert "x.pt" in line
