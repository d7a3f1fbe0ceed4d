"""tool=generate and the transformer's key/value cache: cached decoding gives exactly what re-encoding gives."""

from __future__ import annotations

import pytest
import torch

from uer.errors import UerError
from uer.tokenizers.detokenize import detokenize
from uer.tools.generation import generate_ids, token_picker
from tool_testing import make_checkpoint, make_model, run_tool, save_pt, tool_error, write_vocab

GPT = ("encoder=gpt", "target=lm")


@pytest.fixture()
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt")


@pytest.mark.parametrize("extra", [(), ("size=albert_base", "model.emb_size=16", "model.hidden_size=32",
                                        "model.parameter_sharing=true")], ids=["gpt", "shared_layer"])
def test_incremental_encoding_equals_full_encoding(vocab, extra):
    _, model, _ = make_model(vocab, *GPT, *extra)
    model.eval()
    backbone = model.backbone
    src = torch.randint(5, 35, (2, 19), generator=torch.Generator().manual_seed(0))
    seg = torch.ones_like(src)
    with torch.no_grad():
        full = backbone(src, seg)
        emb = backbone.embedding(src, seg)
        cache = backbone.encoder.new_cache(19)
        parts = [backbone.encoder.forward_incremental(emb[:, :6], cache),  # prompt at once
                 backbone.encoder.forward_incremental(emb[:, 6:9], cache)]  # a block after cached positions
        parts += [backbone.encoder.forward_incremental(emb[:, t:t + 1], cache) for t in range(9, 19)]
    assert cache.length == 19
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(UerError, match="cache holds 19 positions"):
        backbone.encoder.forward_incremental(emb[:, :1], cache)


def test_incremental_needs_a_causal_encoder(vocab):
    _, model, _ = make_model(vocab, "target=mlm")
    with pytest.raises(UerError, match="causal"):
        model.backbone.encoder.forward_incremental(torch.zeros(1, 1, 32), model.backbone.encoder.new_cache(4))


def test_cached_greedy_equals_uncached_greedy(vocab):
    _, model, _ = make_model(vocab, *GPT, seed=3)
    model.eval()
    greedy = token_picker(0.0, 0, 1.0, None)
    prompt = [2, 9, 10, 11]
    head = model.target.output_layer
    cached = generate_ids(model.backbone, head, prompt, 40, greedy, use_cache=True, max_length=512)
    plain = generate_ids(model.backbone, head, prompt, 40, greedy, use_cache=False, max_length=512)
    assert len(cached) == 40 and cached == plain
    # top_k=1 sampling is greedy too, whatever the seed
    top1 = token_picker(1.0, 1, 1.0, torch.Generator().manual_seed(5))
    assert generate_ids(model.backbone, head, prompt, 40, top1, max_length=512) == cached
    # a tiny top_p keeps only the most likely token
    assert generate_ids(model.backbone, head, prompt, 40, token_picker(1.0, 0, 1e-6, torch.Generator()),
                        max_length=512) == cached
    # generation stops when the positions run out (the last token needs no position)
    assert len(generate_ids(model.backbone, head, prompt, 40, greedy, max_length=10)) == 7


def test_sampling_is_seeded(vocab):
    _, model, _ = make_model(vocab, *GPT, seed=3)
    model.eval()
    head = model.target.output_layer

    def sample(seed, use_cache=True):
        pick = token_picker(1.5, 20, 0.95, torch.Generator().manual_seed(seed))
        return generate_ids(model.backbone, head, [2, 9], 30, pick, use_cache=use_cache, max_length=512)

    assert sample(1) == sample(1) == sample(1, use_cache=False)
    assert sample(1) != sample(2)


def test_top_k_and_top_p_limit_the_candidates():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    drawn = {token_picker(5.0, 2, 1.0, torch.Generator().manual_seed(s))(logits) for s in range(200)}
    assert drawn == {0, 1}
    probs = torch.softmax(logits, dim=0)  # 0.64, 0.24, ...: top_p=0.8 keeps the first two
    assert probs[0] < 0.8 < probs[0] + probs[1]
    drawn = {token_picker(1.0, 0, 0.8, torch.Generator().manual_seed(s))(logits) for s in range(200)}
    assert drawn == {0, 1}


def test_generate_tool_cache_on_and_off(tmp_path, vocab):
    path, _ = make_checkpoint(tmp_path / "gpt.pt", vocab, *GPT, seed=3)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("北京\n我们喜欢\n", encoding="utf-8")
    texts = {}
    for use_cache in ("true", "false"):
        out = tmp_path / f"gen_{use_cache}.txt"
        run_tool("generate", f"tool.input_path={path}", f"tool.test_path={prompts}", "tool.max_new_tokens=12",
                 "tool.temperature=0", f"tool.use_cache={use_cache}", f"tool.output_path={out}")
        texts[use_cache] = out.read_text(encoding="utf-8").splitlines()
    assert texts["true"] == texts["false"]
    assert len(texts["true"]) == 2
    assert texts["true"][0].startswith("北京") and texts["true"][1].startswith("我们喜欢")
    assert all(len(text) > len(prompt) for text, prompt in zip(texts["true"], ["北京", "我们喜欢"]))
    sampled = []
    for seed in (11, 11):
        out = tmp_path / "sampled.txt"
        run_tool("generate", f"tool.input_path={path}", "tool.text='北京'", "tool.max_new_tokens=12",
                 "tool.top_k=0", f"seed={seed}", f"tool.output_path={out}")
        sampled.append(out.read_text(encoding="utf-8"))
    assert sampled[0] == sampled[1]


def test_generate_stops_at_sep(tmp_path, vocab):
    cfg, model, tokenizer = make_model(vocab, *GPT)
    with torch.no_grad():
        model.target.output_layer.bias[tokenizer.vocab.sep_id] = 100.0  # [SEP] always wins
    path = save_pt(tmp_path / "sep.pt", cfg, model, tokenizer)
    out = tmp_path / "g.txt"
    run_tool("generate", f"tool.input_path={path}", "tool.text='北京'", "tool.temperature=0",
             f"tool.output_path={out}")
    assert out.read_text(encoding="utf-8") == "北京\n"


def test_detokenize():
    assert detokenize("hello", ["world", "##s", "!", "北", "京"], "bert") == "hello worlds!北京"
    assert detokenize("a b", ["c", "d"], "space") == "a b c d"


def test_generate_bad_inputs(tmp_path, capsys, vocab):
    gpt, _ = make_checkpoint(tmp_path / "gpt.pt", vocab, *GPT)
    mlm, _ = make_checkpoint(tmp_path / "mlm.pt", vocab, "target=mlm")
    line = tool_error(capsys, "generate", f"tool.input_path={mlm}", "tool.text='北京'")
    assert "mlm.pt" in line and "target=lm" in line
    line = tool_error(capsys, "generate", f"tool.input_path={gpt}", "tool.text='北京'", "tool.top_p=0")
    assert "tool.top_p=0" in line
    line = tool_error(capsys, "generate", f"tool.input_path={gpt}", "tool.text='北京'", "tool.temperature=-1")
    assert "tool.temperature=-1" in line
    line = tool_error(capsys, "generate", f"tool.input_path={gpt}", f"tool.test_path={tmp_path / 'p.txt'}")
    assert "p.txt" in line
    line = tool_error(capsys, "generate", f"tool.input_path={tmp_path / 'nope.pt'}", "tool.text='北京'")
    assert "nope.pt" in line
    short, _ = make_checkpoint(tmp_path / "short.pt", vocab, *GPT, "model.max_seq_length=4")
    line = tool_error(capsys, "generate", f"tool.input_path={short}", "tool.text='北京是中国的首都'")
    assert "tool.text" in line and "4 positions" in line


@pytest.mark.parametrize("encoder", ["lstm", "gru", "cnn", "gatedcnn"])
def test_generate_on_a_model_without_positions(tmp_path, capsys, vocab, encoder):
    """RNN/CNN language models (embedding=word, no position embedding) generate as the original's scripts did:
    without a cache (the refusal says so, and its advice then works), to max_new_tokens whatever the length."""
    cfg, model, tokenizer = make_model(vocab, f"encoder={encoder}", "target=lm", "embedding=word", seed=2)
    assert "max_seq_length" not in cfg.embedding  # the case that crashed: no position embedding
    path = save_pt(tmp_path / "m.pt", cfg, model, tokenizer)
    line = tool_error(capsys, "generate", f"tool.input_path={path}", "tool.text='北京'")
    assert "has no key/value cache; add tool.use_cache=false" in line
    out = tmp_path / "g.txt"
    run_tool("generate", f"tool.input_path={path}", "tool.text='北京'", "tool.temperature=0", "tool.use_cache=false",
             "tool.max_new_tokens=7", f"tool.output_path={out}")
    text = out.read_text(encoding="utf-8")
    greedy = generate_ids(model.eval().backbone, model.target.output_layer,
                          [tokenizer.vocab.cls_id, *tokenizer.encode("北京")], 7, token_picker(0.0, 0, 1.0, None),
                          use_cache=False, stop_id=tokenizer.vocab.sep_id, max_length=None)
    assert text == detokenize("北京", tokenizer.convert_ids_to_tokens(greedy), tokenizer.kind) + "\n"
