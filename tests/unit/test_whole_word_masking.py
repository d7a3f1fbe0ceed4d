"""Whole-word masking: word boundaries from jieba / whitespace aligned to the tokens, whole words masked
within the plain budget, one masking function for static and dynamic masking, byte-identical datasets
for any processes_num, bad options refused before any work."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from uer.data import build as build_module
from uer.data.build import build_pretrain_dataset
from uer.data.masking import MaskingScheme, _budgets, mask_instances
from uer.data.pretrain_dataset import PretrainDataset
from uer.data.segmentation import WordSegmenter, line_word_starts
from uer.errors import UerError
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, VOCAB

CHINESE = "今天天气很好，我们一起去公园散步。"
SPECIAL = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(dict(type="bert", vocab_path=str(VOCAB)))


@pytest.fixture(scope="module")
def english_tok(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello",
                                "world", "play", "##ing", "##s", "the", "cat", "dog", "."]) + "\n")
    return build_tokenizer(dict(type="bert", vocab_path=str(vocab)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "book_review.txt"
    with open(ROOT / "corpora" / "book_review.txt", encoding="utf-8") as f:
        path.write_text("".join(next(f) for _ in range(120)), encoding="utf-8")
    return path


def words_of(tokens, starts):
    """The tokens grouped into words at the starts."""
    bounds = [*np.flatnonzero(starts).tolist(), len(tokens)]
    return [tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------- word boundaries

def test_jieba_words_are_the_tokens_grouped(tok):
    import jieba
    ids = tok.encode(CHINESE)
    starts = line_word_starts(CHINESE, ids, tok, WordSegmenter("jieba"))
    grouped = ["".join(word) for word in words_of(tok.convert_ids_to_tokens(ids), starts)]
    assert grouped == list(jieba.cut(CHINESE))
    assert any(len(word) > 1 for word in grouped)


def test_user_dictionary_joins_words(tok, tmp_path):
    line = "我在云计算实验室工作"
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("云计算实验室 100000 n\n", encoding="utf-8")
    ids = tok.encode(line)
    plain = ["".join(w) for w in words_of(list(line), line_word_starts(line, ids, tok, WordSegmenter("jieba")))]
    joined = ["".join(w) for w in words_of(list(line), line_word_starts(line, ids, tok,
                                                                         WordSegmenter("jieba", str(user_dict))))]
    assert "云计算实验室" not in plain and "云计算实验室" in joined


def test_whitespace_words_keep_wordpiece_continuations(english_tok):
    line = "Unaffable  the Cat's playing."
    ids = english_tok.encode(line)
    tokens = english_tok.convert_ids_to_tokens(ids)
    starts = line_word_starts(line, ids, english_tok, WordSegmenter("whitespace"))
    assert words_of(tokens, starts) == [["un", "##aff", "##able"], ["the"], ["cat"], ["[UNK]"], ["[UNK]"],
                                        ["play", "##ing", "."]]


def test_unplaceable_tokens_start_words(english_tok):
    line = "hello zzz world"
    ids = english_tok.encode(line)
    starts = line_word_starts(line, ids, english_tok, WordSegmenter("whitespace"))
    assert english_tok.convert_ids_to_tokens(ids) == ["hello", "[UNK]", "world"]
    assert starts.tolist() == [True, True, True]


# ---------------------------------------------------------------- masking

def random_words(seed, n=200):
    """n instances [CLS] words [SEP] words [SEP] of random ordinary tokens, words of 1 to 4 tokens."""
    rng = np.random.default_rng(seed)
    parts, starts = [], []
    for _ in range(n):
        sizes = rng.integers(1, 5, size=int(rng.integers(1, 30)))
        body_starts = np.concatenate([[True] + [False] * (s - 1) for s in sizes.tolist()])
        cut = int(rng.integers(0, len(body_starts) + 1))
        flags = np.concatenate(([True], body_starts[:cut], [True], body_starts[cut:], [True]))
        body = rng.integers(5, 1000, size=len(body_starts))
        parts.append(np.concatenate(([1], body[:cut], [2], body[cut:], [2])).astype(np.uint16))
        starts.append(flags)
    offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts])))
    return np.concatenate(parts), offsets, np.concatenate(starts)


def scheme(**kwargs):
    return MaskingScheme(vocab_size=1000, mask_id=4, special_ids=SPECIAL, whole_word_masking=True, **kwargs)


def effective_words(tokens, starts, special_ids=SPECIAL):
    """Word id per token as masking sees it: a special token and the token after it start a word."""
    special = np.isin(tokens, list(special_ids))
    starts = starts | special
    starts[1:] |= special[:-1]
    return np.cumsum(starts) - 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_words_within_the_plain_budget(seed):
    tokens, offsets, starts = random_words(seed)
    result = mask_instances(tokens, offsets, np.random.default_rng(seed), scheme(), starts)
    word = effective_words(tokens, starts)
    special = np.isin(tokens, SPECIAL)
    budgets = _budgets(np.add.reduceat((~special).astype(np.int64), offsets[:-1]))
    first = np.concatenate(([0], np.cumsum(result.counts)))
    for i, budget in enumerate(budgets.tolist()):
        start, end = offsets[i], offsets[i + 1]
        chosen = np.zeros(end - start, dtype=bool)
        chosen[result.positions[first[i]:first[i + 1]]] = True
        instance_words = word[start:end]
        for w in np.unique(instance_words):
            covered = chosen[instance_words == w]
            assert covered.all() or not covered.any(), "a word was masked in part"
        assert not chosen[special[start:end]].any()
        sizes = np.bincount(instance_words - instance_words[0])
        unchosen = np.unique(instance_words[~chosen & ~special[start:end]]) - instance_words[0]
        left = budget - chosen.sum()
        if left < 0:  # allowed only when no word fits: then exactly one word is taken
            assert len(np.unique(instance_words[chosen])) == 1 and sizes[unchosen].min(initial=budget + 1) > budget
        else:  # no word left out would still have fitted
            assert sizes[unchosen].min(initial=left + 1) > left
        assert np.array_equal(result.labels[first[i]:first[i + 1]], tokens[start:end][chosen])


def test_one_token_words_take_exactly_the_plain_budget():
    tokens, offsets, _ = random_words(5)
    plain = mask_instances(tokens, offsets, np.random.default_rng(3),
                           MaskingScheme(vocab_size=1000, mask_id=4, special_ids=SPECIAL))
    whole = mask_instances(tokens, offsets, np.random.default_rng(3), scheme(), np.ones(len(tokens), bool))
    assert np.array_equal(plain.counts, whole.counts)


def test_one_draw_per_word():
    tokens, offsets, starts = random_words(7)
    result = mask_instances(tokens, offsets, np.random.default_rng(7), scheme(), starts)
    flat = np.repeat(offsets[:-1], result.counts) + result.positions
    word = effective_words(tokens, starts)[flat]
    became_mask = result.tokens[flat] == 4
    for w in np.unique(word):
        assert len(np.unique(became_mask[word == w])) == 1


def test_refuses_to_mask_words_without_their_boundaries():
    tokens, offsets, _ = random_words(0, n=2)
    with pytest.raises(ValueError, match="word_starts"):
        mask_instances(tokens, offsets, np.random.default_rng(0), scheme())


# ---------------------------------------------------------------- datasets

def build(tok, corpus, path, target="mlm", **kwargs):
    return build_pretrain_dataset(corpus, path, tok, target, seq_length=48, whole_word_masking=True, **kwargs)


def arrays(path):
    return {p.stem: np.load(p) for p in Path(path).glob("*.npy")}


def test_static_dataset_masks_whole_jieba_words(tok, corpus, tmp_path):
    build(tok, corpus, tmp_path / "ds")
    data = arrays(tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["masking"]["whole_word_masking"] is True and meta["word_segmentation"]["segmenter"] == "jieba"
    assert "word_starts" in meta["arrays"] and len(data["word_starts"]) == len(data["tokens"])
    flat = np.repeat(data["offsets"][:-1], np.diff(data["mask_offsets"])) + data["mask_positions"]
    original = data["tokens"].astype(np.int64)
    original[flat] = data["mask_labels"]
    word = effective_words(original, data["word_starts"].astype(bool), meta["masking"]["special_ids"])
    chosen = np.zeros(len(original), dtype=bool)
    chosen[flat] = True
    per_word = np.bincount(word, weights=chosen) / np.bincount(word)
    assert set(np.unique(per_word).tolist()) == {0.0, 1.0}
    assert (np.bincount(word)[per_word == 1] > 1).any(), "no word of several characters was masked"


def test_dynamic_masks_are_the_static_function_on_the_stored_words(tok, corpus, tmp_path):
    build(tok, corpus, tmp_path / "ds", dynamic_masking=True)
    dataset = PretrainDataset(tmp_path / "ds")
    data = arrays(tmp_path / "ds")
    masking = MaskingScheme.from_dict(dataset.meta["masking"])
    batch = dataset.batch(np.array([3]), epoch=2, seed=11)
    start, end = data["offsets"][3], data["offsets"][4]
    tokens = data["tokens"][start:end].astype(np.int64)
    expected = mask_instances(tokens, np.array([0, len(tokens)]), np.random.default_rng([11, 2, 3]), masking,
                              data["word_starts"][start:end].astype(bool))
    assert np.array_equal(batch["mlm_positions"].numpy(), expected.positions)
    assert np.array_equal(batch["src"][0].numpy(), expected.tokens)


@pytest.mark.parametrize("target, kwargs, start_method", [
    ("mlm", {}, "spawn"),
    ("bert", {"docs_buffer_size": 50, "word_segmenter": "whitespace"}, "fork"),
])
def test_processes_num_does_not_change_a_byte(tok, corpus, tmp_path, monkeypatch, target, kwargs, start_method):
    if start_method not in build_module.multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} here")
    monkeypatch.setattr(build_module, "UNIT_BYTES", 4096)
    monkeypatch.setattr(build_module, "_start_method", lambda: start_method)
    source = corpus
    if target == "bert":
        source = tmp_path / "docs.txt"
        lines = corpus.read_text(encoding="utf-8").splitlines()
        source.write_text("\n\n".join("\n".join(lines[i:i + 3]) for i in range(0, len(lines), 3)) + "\n",
                          encoding="utf-8")
    build(tok, source, tmp_path / "one", target, processes_num=1, **kwargs)
    build(tok, source, tmp_path / "two", target, processes_num=2, **kwargs)
    one, two = (sorted(Path(tmp_path / d).iterdir()) for d in ("one", "two"))
    assert [p.name for p in one] == [p.name for p in two] and "word_starts.npy" in [p.name for p in one]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))


def test_plain_datasets_hold_no_word_starts(tok, corpus, tmp_path):
    build_pretrain_dataset(corpus, tmp_path / "ds", tok, "mlm", seq_length=48)
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert "whole_word_masking" not in meta["masking"] and "word_segmentation" not in meta
    assert not (tmp_path / "ds" / "word_starts.npy").exists()


def test_damaged_word_starts_are_refused(tok, corpus, tmp_path):
    build(tok, corpus, tmp_path / "ds", dynamic_masking=True)
    path = tmp_path / "ds" / "word_starts.npy"
    damaged = np.load(path)
    damaged[5] = 7
    np.save(path, damaged)
    with pytest.raises(UerError, match="word_starts.npy holds 7 at index 5"):
        PretrainDataset(tmp_path / "ds")


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("target, kwargs, fragment", [
    ("lm", {}, "preprocess.whole_word_masking applies to the masked-LM targets"),
    ("mlm", {"span_masking": True}, "preprocess.whole_word_masking and preprocess.span_masking"),
    ("mlm", {"word_segmenter": "thulac"}, "preprocess.word_segmenter=thulac is not one of jieba, whitespace"),
    ("mlm", {"segmenter_dict": "/nonexistent/dict.txt"}, "preprocess.segmenter_dict=/nonexistent/dict.txt cannot"),
    ("mlm", {"word_segmenter": "whitespace", "segmenter_dict": "d.txt"}, "preprocess.segmenter_dict is a jieba"),
])
def test_bad_options_are_refused_before_any_work(tok, corpus, tmp_path, target, kwargs, fragment):
    with pytest.raises(UerError, match=fragment.replace(".", r"\.")) as error:
        build(tok, corpus, tmp_path / "ds", target, **kwargs)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "ds").exists()


def test_segmenter_dict_without_whole_word_masking_is_refused(tok, corpus, tmp_path):
    with pytest.raises(UerError, match="preprocess.segmenter_dict is read only with"):
        build_pretrain_dataset(corpus, tmp_path / "ds", tok, "mlm", segmenter_dict="dict.txt")
    assert not (tmp_path / "ds").exists()


def test_missing_jieba_names_the_extra(tok, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba now raises ImportError
    with pytest.raises(UerError, match=r'pip install -e "\.\[wwm\]"'):
        build(tok, corpus, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("make", ["wordpiece_tokenizer", "byte_level_bpe"])
def test_fast_tokenizers_place_tokens_by_their_offsets(tmp_path, make):
    import tokenizer_testing
    made = getattr(tokenizer_testing, make)
    tokenizer = made(tokenizer_testing.BERT_SPECIALS) if make == "byte_level_bpe" else made()
    directory = tokenizer_testing.model_dir(tmp_path / "m", tokenizer, {})
    hf = build_tokenizer(dict(type="hf", tokenizer_path=str(directory)))
    line = "Tokenizers jumps over quickly-brown foxes"
    ids = hf.encode(line)
    starts = line_word_starts(line, ids, hf, WordSegmenter("whitespace"))
    _, spans = hf.encode_with_offsets(line)
    words = ["".join(line[a:b] for a, b in spans[i:j]).strip()
             for i, j in zip(np.flatnonzero(starts), [*np.flatnonzero(starts)[1:], len(ids)])]
    assert words == line.split()
    assert len(ids) > len(words), "every word was a single token: nothing was tested"
