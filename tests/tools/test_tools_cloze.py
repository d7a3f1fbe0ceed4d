"""tool=cloze_test on a tiny MLM model trained here to memorise one sentence: the original token ranks first."""

from __future__ import annotations

import json

import pytest
import torch

from tool_testing import make_checkpoint, make_model, run_tool, save_pt, tool_error, write_vocab

SENTENCE = "北京是中国的首都"


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """(checkpoint path, vocab path) of an MLM model that has learned SENTENCE by heart."""
    torch.set_num_threads(1)  # as hardware.num_threads=1 does for the tools
    tmp = tmp_path_factory.mktemp("cloze")
    vocab = write_vocab(tmp / "vocab.txt")
    cfg, model, tokenizer = make_model(vocab, "target=mlm", "model.dropout=0.0")
    ids = [tokenizer.vocab.cls_id, *tokenizer.encode(SENTENCE), tokenizer.vocab.sep_id]
    batch_size, length = 16, len(ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(300):
        src = torch.tensor([ids] * batch_size)
        # mask one or two real positions per row
        positions = torch.randint(1, length - 1, (batch_size, 2), generator=generator)
        positions[::2, 1] = positions[::2, 0]
        masked = torch.zeros_like(src, dtype=torch.bool)
        masked.scatter_(1, positions, True)
        labels = src[masked]
        src = src.masked_fill(masked, tokenizer.vocab.mask_id)
        flat = torch.nonzero(masked.reshape(-1)).squeeze(1)
        loss = model({"src": src, "seg": torch.ones_like(src), "mlm_positions": flat, "mlm_labels": labels}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, loss.item()
    return save_pt(tmp / "mlm.pt", cfg, model.eval(), tokenizer), vocab


def test_cloze_ranks_the_original_token_first(tmp_path, memorised):
    path, _ = memorised
    lines = [SENTENCE[:i] + "[MASK]" + SENTENCE[i + 1:] for i in range(len(SENTENCE))]
    lines.append("[MASK]京是中国的首[MASK]")  # two masks in one line
    test = tmp_path / "cloze.txt"
    test.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "cloze.jsonl"
    run_tool("cloze_test", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={out}",
             "tool.topn=3", "tool.batch_size=4")
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(results) == len(lines)
    for i, result in enumerate(results[:-1]):
        assert result["text"] == lines[i]
        assert len(result["predictions"]) == 1 and len(result["predictions"][0]) == 3
        token, probability = result["predictions"][0][0]
        assert token == SENTENCE[i] and probability > 0.5
        assert result["filled"] == SENTENCE
    assert [p[0][0] for p in results[-1]["predictions"]] == ["北", "都"] and results[-1]["filled"] == SENTENCE


def test_cloze_from_text(tmp_path, memorised):
    path, _ = memorised
    out = tmp_path / "one.jsonl"
    run_tool("cloze_test", f"tool.input_path={path}", "tool.text='北京是中[MASK]的首都'",
             f"tool.output_path={out}")
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["filled"] == SENTENCE and len(result["predictions"][0]) == 10


def test_cloze_bad_inputs(tmp_path, capsys, memorised):
    path, vocab = memorised
    line = tool_error(capsys, "cloze_test", f"tool.input_path={path}", "tool.text='北京是中国的首都'")
    assert "tool.text" in line and "[MASK]" in line
    test = tmp_path / "t.txt"
    test.write_text("北京[MASK]\n北京\n", encoding="utf-8")
    line = tool_error(capsys, "cloze_test", f"tool.input_path={path}", f"tool.test_path={test}")
    assert f"{test}:2" in line and "[MASK]" in line
    line = tool_error(capsys, "cloze_test", f"tool.input_path={path}", f"tool.test_path={tmp_path / 'none.txt'}")
    assert "none.txt" in line
    gpt, _ = make_checkpoint(tmp_path / "gpt.pt", vocab, "encoder=gpt", "target=lm")
    line = tool_error(capsys, "cloze_test", f"tool.input_path={gpt}", "tool.text='北[MASK]'")
    assert "gpt.pt" in line and "target=lm" in line and "mlm" in line
    line = tool_error(capsys, "cloze_test", f"tool.input_path={path}", "tool.text='北京是中国的首都[MASK]'",
                      "tool.seq_length=6")
    assert "tool.seq_length" in line


def test_random_mode_masks_one_token_per_line_as_the_original(tmp_path, memorised):
    """tool.mode=random: [CLS] + tokens (no [SEP]), one random token masked; hit = the answer is in the topn."""
    path, _ = memorised
    test = tmp_path / "lines.txt"
    test.write_text((SENTENCE + "\n") * 6, encoding="utf-8")
    out = tmp_path / "random.jsonl"
    run_tool("cloze_test", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={out}",
             "tool.topn=3", "tool.mode=random", "seed=3")
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(results) == 6 and len({r["position"] for r in results}) > 1  # positions are drawn
    for result in results:
        tokens = result["masked"].split(" ")
        assert len(tokens) == len(SENTENCE) and tokens.count("[MASK]") == 1
        position = result["position"]
        assert tokens[position] == "[MASK]" and result["answer"] == SENTENCE[position]
        assert tokens[:position] + tokens[position + 1:] == list(SENTENCE[:position] + SENTENCE[position + 1:])
        assert len(result["predictions"]) == 3
        assert result["hit"] == (result["answer"] in [token for token, _ in result["predictions"]])
    assert all(result["hit"] for result in results)  # the model knows the sentence by heart
    again = tmp_path / "again.jsonl"
    run_tool("cloze_test", f"tool.input_path={path}", f"tool.test_path={test}", f"tool.output_path={again}",
             "tool.topn=3", "tool.mode=random", "seed=3")
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")  # seeded
