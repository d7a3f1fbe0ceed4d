"""Corpus -> dataset: corpus validation and indexing, instance structure per target,
determinism across seeds and processes, atomic replacement."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from uer.data import build as build_module
from uer.data import corpus as corpus_module
from uer.data.build import build_pretrain_dataset
from uer.data.corpus import DOCUMENTS, LINES, index_corpus, read_documents
from uer.errors import UerError
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT

SEQ = 64


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(dict(type="bert", vocab_path=str(ROOT / "models/google_zh_vocab.txt")))


def head(name, lines, directory):
    path = directory / name
    with open(ROOT / "corpora" / name, encoding="utf-8") as f:
        path.write_text("".join(next(f) for _ in range(lines)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpora")
    return {"lines": head("book_review.txt", 200, directory), "docs": head("book_review_bert.txt", 600, directory)}


def build(tok, corpus, path, target, **kwargs):
    return build_pretrain_dataset(corpus, path, tok, target, seq_length=SEQ, **kwargs)


def load(path):
    """The dataset's arrays and meta, read directly from disk."""
    arrays = {p.stem: np.load(p) for p in Path(path).glob("*.npy")}
    arrays["meta"] = json.loads((Path(path) / "meta.json").read_text())
    return arrays


def instances(data, restore=True):
    """Instances as int64 arrays, with static masks undone when ``restore``."""
    tokens = data["tokens"].astype(np.int64)
    if restore and "mask_offsets" in data:
        flat = np.repeat(data["offsets"][:-1], np.diff(data["mask_offsets"])) + data["mask_positions"]
        tokens[flat] = data["mask_labels"]
    return np.split(tokens, data["offsets"][1:-1])


def corpus_lines(path):
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]


def corpus_documents(path):
    docs, current = [], []
    for line in Path(path).read_text(encoding="utf-8").split("\n") + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            docs.append(current)
            current = []
    return docs


def key(ids):
    return " " + " ".join(map(str, ids)) + " "


def check_masks(data, tok, low=0.13, high=0.17):
    """~15% of the ordinary tokens masked, 80/10/10, never a special token."""
    special = list(tok.vocab.special_ids)
    original = np.concatenate(instances(data))
    flat = np.repeat(data["offsets"][:-1], np.diff(data["mask_offsets"])) + data["mask_positions"]
    assert low < len(flat) / np.sum(~np.isin(original, special)) < high
    assert not np.isin(original[flat], special).any()
    assert np.all(np.diff(data["mask_offsets"]) >= 1)
    stored = data["tokens"][flat]
    assert 0.72 < np.mean(stored == tok.vocab.mask_id) < 0.88
    assert 0.05 < np.mean(stored == data["mask_labels"]) < 0.15


# ---------------------------------------------------------------- corpus

def test_index_is_the_same_whatever_the_chunk_size(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffa b\r\n\n \u3000\nc\nd\n\n\n e \nf".encode("utf-8"))
    expected = {layout: index_corpus(path, layout) for layout in (LINES, DOCUMENTS)}
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 3)
    for layout in (LINES, DOCUMENTS):
        index = index_corpus(path, layout)
        np.testing.assert_array_equal(index.starts, expected[layout].starts)
        np.testing.assert_array_equal(index.ends, expected[layout].ends)
    lines_index = expected[LINES]
    assert read_documents(path, lines_index.starts, lines_index.ends) == (["a b", "c", "d", "e", "f"], [1] * 5)
    docs = expected[DOCUMENTS]
    assert read_documents(path, docs.starts, docs.ends) == (["a b", "c", "d", "e", "f"], [1, 2, 2])


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"\n  \n\t\n\xe3\x80\x80\n", "only blank lines"),
    ("第一行\n第二行\n".encode("utf-8") + "第三行".encode("gbk") + b"\n", ":3: not valid UTF-8"),
    (b"\x01\x02\n\x03\n", "yields no mlm instances"),
])
def test_bad_corpus_leaves_existing_dataset_intact(tok, corpora, tmp_path, content, message):
    dataset = tmp_path / "ds"
    build(tok, corpora["lines"], dataset, "mlm")
    before = {p.name: p.read_bytes() for p in dataset.iterdir()}
    corpus = tmp_path / "bad.txt"
    if content is not None:
        corpus.write_bytes(content)
    with pytest.raises(UerError, match=message) as err:
        build(tok, corpus, dataset, "mlm")
    assert str(corpus) in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in dataset.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "ds"] if content is not None else ["ds"]


def test_dataset_path_that_is_no_dataset_is_not_replaced(tok, corpora, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(UerError, match="not a dataset"):
        build(tok, corpora["lines"], tmp_path, "mlm")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_existing_dataset_is_replaced(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "ds", "mlm")
    build(tok, corpora["docs"], tmp_path / "ds", "bert")
    assert load(tmp_path / "ds")["meta"]["target"] == "bert"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"], "no temporary or old directory is left"


@pytest.mark.parametrize("target, kwargs, message", [
    ("gpt", {}, "unknown pre-training target"),
    ("lm", {"span_masking": True}, "apply to the masked-LM targets"),
    ("mlm", {"seq_length": 4}, "seq_length=4"),
    ("mlm", {"dup_factor": 0}, "dup_factor=0"),
])
def test_bad_options(tok, corpora, tmp_path, target, kwargs, message):
    with pytest.raises(UerError, match=message):
        build_pretrain_dataset(corpora["lines"], tmp_path / "ds", tok, target, **kwargs)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- targets

def test_mlm_cuts_each_document_behind_cls(tok, corpora, tmp_path):
    summary = build(tok, corpora["lines"], tmp_path / "ds", "mlm")
    data = load(tmp_path / "ds")
    insts = instances(data)
    assert summary["documents"] == 200 and summary["instances"] == len(insts) == data["meta"]["counts"]["instances"]
    assert summary["tokens"] == len(data["tokens"])
    assert all(i[0] == tok.vocab.cls_id and len(i) <= SEQ for i in insts)
    np.testing.assert_array_equal(data["seg_a_len"], [len(i) for i in insts])
    stream = np.concatenate([i[1:] for i in insts])
    expected = np.concatenate([ids + [tok.vocab.sep_id] for ids in tok.encode_batch(corpus_lines(corpora["lines"]))])
    np.testing.assert_array_equal(stream, expected)
    assert sum(len(i) == SEQ for i in insts) > 0, "long reviews span several instances"
    check_masks(data, tok)


def test_mlm_full_sentences_packs_shuffled_documents(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "ds", "mlm", full_sentences=True)
    insts = instances(load(tmp_path / "ds"))
    assert all(len(i) == SEQ for i in insts[:-1]) and insts[0][0] == tok.vocab.cls_id
    stream = np.concatenate([i[1:] for i in insts]).tolist()
    docs = key(stream).split(f" {tok.vocab.sep_id} ")
    expected = [key(ids).strip() for ids in tok.encode_batch(corpus_lines(corpora["lines"]))]
    got = [d.strip() for d in docs if d.strip()]
    assert sorted(got) == sorted(expected) and got != expected


def test_span_masking_masks_runs(tok, corpora, tmp_path):
    def mean_run(path):
        data = load(path)
        runs = []
        for start, end in zip(data["mask_offsets"][:-1], data["mask_offsets"][1:]):
            positions = data["mask_positions"][start:end].astype(np.int64)
            runs += np.diff(np.flatnonzero(np.diff(np.concatenate(([-2], positions, [10**6]))) != 1)).tolist()
        return np.mean(runs)

    build(tok, corpora["lines"], tmp_path / "span", "mlm", span_masking=True)
    build(tok, corpora["lines"], tmp_path / "plain", "mlm")
    assert mean_run(tmp_path / "span") > 2 > 1.4 > mean_run(tmp_path / "plain")
    check_masks(load(tmp_path / "span"), tok)


def test_dynamic_masking_stores_unmasked_instances_once(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "static", "mlm")
    build(tok, corpora["lines"], tmp_path / "dyn", "mlm", dynamic_masking=True, dup_factor=3)
    static, dyn = load(tmp_path / "static"), load(tmp_path / "dyn")
    assert "mask_positions" not in dyn and dyn["meta"]["stored_repeats"] == 1
    assert not np.any(dyn["tokens"] == tok.vocab.mask_id)
    np.testing.assert_array_equal(np.concatenate(instances(static)), dyn["tokens"])


def test_dup_factor_repeats_with_fresh_masks(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "ds", "mlm", dup_factor=2)
    data = load(tmp_path / "ds")
    n = len(data["offsets"]) - 1
    assert n % 2 == 0 and data["meta"]["stored_repeats"] == 2
    restored = instances(data)
    assert all(np.array_equal(a, b) for a, b in zip(restored[:n // 2], restored[n // 2:]))
    masked = instances(data, restore=False)
    assert not all(np.array_equal(a, b) for a, b in zip(masked[:n // 2], masked[n // 2:]))


def test_lm_instances_predict_every_token_once(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "ds", "lm")
    data = load(tmp_path / "ds")
    insts = instances(data)
    assert "mask_positions" not in data
    assert all(i[0] == tok.vocab.cls_id and 2 <= len(i) <= SEQ + 1 for i in insts)
    assert any(len(i) == SEQ + 1 for i in insts)
    labels = np.concatenate([i[1:] for i in insts])
    expected = np.concatenate([ids + [tok.vocab.sep_id] for ids in tok.encode_batch(corpus_lines(corpora["lines"]))])
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("target", ["bert", "albert"])
def test_sentence_pair_instances(tok, corpora, tmp_path, target):
    build(tok, corpora["docs"], tmp_path / "ds", target)
    data = load(tmp_path / "ds")
    cls, sep = tok.vocab.cls_id, tok.vocab.sep_id
    labels = data["sentence_label"]
    insts = instances(data)
    documents = "|".join(key(np.concatenate(tok.encode_batch(doc)).tolist())
                         for doc in corpus_documents(corpora["docs"]))
    checked = 0
    for inst, a_len, label in zip(insts, data["seg_a_len"], labels):
        assert inst[0] == cls and inst[a_len - 1] == sep and inst[-1] == sep and len(inst) <= SEQ
        assert np.sum(inst == sep) == 2 and 3 <= a_len <= len(inst) - 2
        a, b = inst[1:a_len - 1].tolist(), inst[a_len:-1].tolist()
        if len(inst) < SEQ:  # not truncated: the real pair is contiguous text of one document
            if label == 0:
                assert key(a + b) in documents
            elif target == "albert":
                assert key(b + a) in documents
            checked += 1
    assert checked > 50
    assert 0.35 < labels.mean() < 0.65
    assert set(np.unique(labels)) == {0, 1}
    check_masks(data, tok, 0.12, 0.18)


def test_short_seq_prob_shortens_pairs(tok, corpora, tmp_path):
    sentences = corpus_lines(corpora["docs"])
    long_docs = tmp_path / "long_docs.txt"  # 20 sentences a document: chunks end at the target length
    long_docs.write_text("\n\n".join("\n".join(sentences[i:i + 20]) for i in range(0, len(sentences), 20)))
    build(tok, long_docs, tmp_path / "long", "bert", short_seq_prob=0.0)
    build(tok, long_docs, tmp_path / "short", "bert", short_seq_prob=1.0)
    mean_length = lambda p: np.diff(load(p)["offsets"]).mean()  # noqa: E731
    assert mean_length(tmp_path / "short") < 0.8 * mean_length(tmp_path / "long")


# ---------------------------------------------------------------- determinism

def files(path):
    return {p.name: p.read_bytes() for p in sorted(Path(path).iterdir())}


@pytest.mark.parametrize("target, kwargs, start_method", [
    ("mlm", {}, "spawn"),
    ("mlm", {"full_sentences": True, "docs_buffer_size": 40}, "fork"),
    ("bert", {"docs_buffer_size": 50}, "fork"),
])
def test_processes_num_does_not_change_a_byte(tok, corpora, tmp_path, monkeypatch, caplog, target, kwargs,
                                              start_method):
    if start_method not in build_module.multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start_method} here")
    monkeypatch.setattr(build_module, "UNIT_BYTES", 4096)  # several units from a small corpus
    monkeypatch.setattr(build_module, "_start_method", lambda: start_method)
    corpus = corpora["docs" if target == "bert" else "lines"]
    build(tok, corpus, tmp_path / "one", target, processes_num=1, **kwargs)
    with caplog.at_level("INFO", logger="uer.preprocess"):
        build(tok, corpus, tmp_path / "two", target, processes_num=2, **kwargs)
    assert f"2 process(es) ({start_method})" in caplog.text
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_seed_decides_the_dataset(tok, corpora, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        build(tok, corpora["docs"], tmp_path / name, "albert", seed=seed)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert load(tmp_path / "a")["tokens"].tobytes() != load(tmp_path / "c")["tokens"].tobytes()


def test_meta_records_what_the_dataset_was_built_for(tok, corpora, tmp_path):
    build(tok, corpora["lines"], tmp_path / "ds", "mlm", span_masking=True, seed=11,
          tokenizer_cfg={"type": "bert", "vocab_path": "models/google_zh_vocab.txt"})
    meta = load(tmp_path / "ds")["meta"]
    assert meta["target"] == "mlm" and meta["seq_length"] == SEQ and meta["seed"] == 11
    assert meta["tokenizer"] == tok.identity() and meta["tokenizer_settings"]["type"] == "bert"
    assert meta["masking"]["span_masking"] is True and meta["dynamic_masking"] is False
    assert meta["corpus"] == {"path": os.path.abspath(corpora["lines"]), "bytes": corpora["lines"].stat().st_size}
    assert meta["arrays"]["tokens"]["dtype"] == "<u2"
