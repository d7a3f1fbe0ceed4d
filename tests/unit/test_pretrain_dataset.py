"""PretrainDataset: opening and validating a dataset, batch contract, dynamic masking."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from uer.data.build import build_pretrain_dataset
from uer.data.pretrain_dataset import PretrainDataset
from uer.errors import UerError
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT

SEQ = 64


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(dict(type="bert", vocab_path=str(ROOT / "models/google_zh_vocab.txt")))


@pytest.fixture(scope="module")
def datasets(tok, tmp_path_factory):
    """One small dataset per flavour: name -> path."""
    directory = tmp_path_factory.mktemp("datasets")
    corpora = {}
    for name, lines in (("book_review.txt", 200), ("book_review_bert.txt", 400)):
        with open(ROOT / "corpora" / name, encoding="utf-8") as f:
            corpora[name] = directory / name
            corpora[name].write_text("".join(next(f) for _ in range(lines)), encoding="utf-8")
    specs = {
        "mlm": ("book_review.txt", "mlm", {}),
        "dynamic": ("book_review.txt", "mlm", {"dynamic_masking": True}),
        "span_dynamic": ("book_review.txt", "mlm", {"dynamic_masking": True, "span_masking": True}),
        "lm": ("book_review.txt", "lm", {}),
        "bert": ("book_review_bert.txt", "bert", {}),
    }
    paths = {}
    for name, (corpus, target, kwargs) in specs.items():
        paths[name] = directory / name
        build_pretrain_dataset(corpora[corpus], paths[name], tok, target, seq_length=SEQ, **kwargs)
    return paths


def raw_instances(path):
    """Unmasked instances straight from the files."""
    tokens = np.load(path / "tokens.npy").astype(np.int64)
    if (path / "mask_offsets.npy").exists():
        mask_offsets, offsets = np.load(path / "mask_offsets.npy"), np.load(path / "offsets.npy")
        tokens[np.repeat(offsets[:-1], np.diff(mask_offsets)) + np.load(path / "mask_positions.npy")] = \
            np.load(path / "mask_labels.npy")
    return np.split(tokens, np.load(path / "offsets.npy")[1:-1])


def pick(ds, count=8):
    """Indices of instances with different lengths, so padding shows."""
    lengths = np.diff(np.load(ds.path / "offsets.npy"))
    return np.concatenate([np.flatnonzero(lengths == lengths.max())[:1], np.argsort(lengths)[:count - 1]])


@pytest.mark.parametrize("name", ["mlm", "dynamic", "bert"])
def test_masked_batch_contract(datasets, tok, name):
    ds = PretrainDataset(datasets[name])
    indices = pick(ds)
    batch = ds.batch(indices, epoch=0, seed=1)
    expected_keys = {"src", "seg", "mlm_positions", "mlm_labels"} | ({"sentence_labels"} if name == "bert" else set())
    assert set(batch) == expected_keys
    assert all(t.dtype == torch.long for t in batch.values())
    originals = raw_instances(ds.path)
    lengths = [len(originals[i]) for i in indices]
    src, seg = batch["src"].numpy(), batch["seg"].numpy()
    assert src.shape == (len(indices), max(lengths)), "padded to the longest instance of the batch"
    restored = src.reshape(-1).copy()
    restored[batch["mlm_positions"].numpy()] = batch["mlm_labels"].numpy()
    restored = restored.reshape(src.shape)
    changed = np.flatnonzero(src.reshape(-1) != restored.reshape(-1))
    assert set(changed) <= set(batch["mlm_positions"].numpy().tolist())
    assert np.mean(src.reshape(-1)[batch["mlm_positions"].numpy()] == tok.vocab.mask_id) > 0.5
    seg_a_len = np.load(ds.path / "seg_a_len.npy")
    for row, (index, n) in enumerate(zip(indices, lengths)):
        np.testing.assert_array_equal(restored[row, :n], originals[index])
        assert not src[row, n:].any() and not seg[row, n:].any()
        a = seg_a_len[index]
        assert (seg[row, :a] == 1).all() and (seg[row, a:n] == 2).all()
    if name == "bert":
        stored = np.load(ds.path / "sentence_label.npy")
        np.testing.assert_array_equal(batch["sentence_labels"].numpy(), stored[indices])


def test_lm_batch_is_shifted_by_one(datasets):
    ds = PretrainDataset(datasets["lm"])
    indices = pick(ds)
    batch = ds.batch(indices, epoch=0, seed=1)
    assert set(batch) == {"src", "seg", "lm_labels"}
    originals = raw_instances(ds.path)
    src, labels, seg = batch["src"].numpy(), batch["lm_labels"].numpy(), batch["seg"].numpy()
    assert src.shape == labels.shape == (len(indices), max(len(originals[i]) for i in indices) - 1)
    for row, index in enumerate(indices):
        tokens = originals[index]
        n = len(tokens) - 1
        np.testing.assert_array_equal(src[row, :n], tokens[:-1])
        np.testing.assert_array_equal(labels[row, :n], tokens[1:])
        assert (labels[row, n:] == -100).all() and not src[row, n:].any()
        assert (seg[row, :n] == 1).all() and not seg[row, n:].any()


@pytest.mark.parametrize("name", ["dynamic", "span_dynamic"])
def test_dynamic_masks_depend_on_instance_epoch_and_seed_only(datasets, tok, name):
    ds = PretrainDataset(datasets[name])
    indices = np.arange(0, 64, 2)
    first = ds.batch(indices, epoch=3, seed=5)
    again = ds.batch(indices.copy(), epoch=3, seed=5)
    for key in first:
        assert torch.equal(first[key], again[key])
    other_epoch = ds.batch(indices, epoch=4, seed=5)
    other_seed = ds.batch(indices, epoch=3, seed=6)
    assert not torch.equal(first["mlm_positions"], other_epoch["mlm_positions"])
    assert not torch.equal(first["mlm_positions"], other_seed["mlm_positions"])
    # the same instance in another batch gets the same mask
    alone = ds.batch(indices[3:4], epoch=3, seed=5)
    n = alone["src"].shape[1]
    assert torch.equal(alone["src"][0], first["src"][3, :n])
    # ~15% of the ordinary tokens of the whole dataset
    everything = ds.batch(np.arange(len(ds)), epoch=0, seed=0)
    ordinary = ~np.isin(everything["src"].numpy(), list(tok.vocab.special_ids - {tok.vocab.mask_id}))
    assert 0.13 < len(everything["mlm_positions"]) / ordinary.sum() < 0.17


def test_static_masks_do_not_change_with_epoch(datasets):
    ds = PretrainDataset(datasets["mlm"])
    a, b = ds.batch(np.arange(16), epoch=0, seed=1), ds.batch(np.arange(16), epoch=9, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_len_meta_and_pickling(datasets):
    ds = PretrainDataset(datasets["bert"])
    assert len(ds) == ds.meta["counts"]["instances"] == len(np.load(datasets["bert"] / "offsets.npy")) - 1
    assert ds.meta["target"] == "bert" and ds.meta["seq_length"] == SEQ
    payload = pickle.dumps(ds)
    assert len(payload) < 1000, "pickled as its path, not its arrays"
    copy = pickle.loads(payload)
    a, b = ds.batch(np.arange(4), 0, 0), copy.batch(np.arange(4), 0, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_check_compatible(datasets, tok):
    ds = PretrainDataset(datasets["mlm"])
    ds.check_compatible("mlm", tok.identity())
    with pytest.raises(UerError) as err:
        ds.check_compatible("bert", tok.identity())
    message = str(err.value)
    assert str(datasets["mlm"]) in message and "'mlm'" in message and "'bert'" in message
    assert "re-run preprocess" in message and "\n" not in message
    other = {**tok.identity(), "vocab_sha256": "0" * 64, "vocab_size": 100}
    with pytest.raises(UerError, match="vocab_size=21128.*vocab_size=100"):
        ds.check_compatible("mlm", other)


def corrupt(datasets, tmp_path, how):
    path = tmp_path / "ds"
    shutil.copytree(datasets["mlm"], path)
    how(path)
    return path


@pytest.mark.parametrize("how, message", [
    (lambda p: shutil.rmtree(p), "not found"),
    (lambda p: (p / "meta.json").unlink(), "meta.json is missing"),
    (lambda p: (p / "meta.json").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "meta.json").write_text(json.dumps({"format": "other"})), "does not describe"),
    (lambda p: (p / "tokens.npy").unlink(), "tokens.npy is missing"),
    (lambda p: (p / "tokens.npy").write_bytes(b"garbage"), "tokens.npy is not a readable array"),
    (lambda p: np.save(p / "offsets.npy", np.arange(3)), "offsets.npy holds"),
])
def test_broken_dataset_is_a_user_error(datasets, tmp_path, how, message):
    path = corrupt(datasets, tmp_path, how)
    with pytest.raises(UerError, match=message) as err:
        PretrainDataset(path)
    assert "\n" not in str(err.value)


def test_inconsistent_arrays_are_a_user_error(datasets, tmp_path):
    def shorten_tokens(path):
        np.save(path / "tokens.npy", np.load(path / "tokens.npy")[:-1])
        meta = json.loads((path / "meta.json").read_text())
        meta["arrays"]["tokens"]["shape"][0] -= 1
        (path / "meta.json").write_text(json.dumps(meta))

    with pytest.raises(UerError, match="do not match"):
        PretrainDataset(corrupt(datasets, tmp_path, shorten_tokens))
