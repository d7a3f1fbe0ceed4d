"""The data of the text-to-text targets: T5 span corruption and BART infilling (properties), the
seq2seq/prefixlm/t5/bart datasets preprocess builds, their batches, and their bad inputs."""

from collections import Counter

import numpy as np
import pytest

from uer.data import build as build_module
from uer.data.build import build_pretrain_dataset
from uer.data.noising import SpanCorruption, TextInfilling, sentinel_ids
from uer.data.prefetch import BatchSource
from uer.data.sampler import EpochSampler
from uer.data.pretrain_dataset import PretrainDataset
from uer.errors import UerError
from uer.stages import preprocess as preprocess_stage
from uer.tokenizers import build_tokenizer
from uer.tokenizers.vocab import Vocab
from uer.training.heldout import build_dev_dataset
from uer_testing import ROOT, VOCAB, compose_config

PARALLEL = ROOT / "datasets/test_data/parallel/train.tsv"
SEQ = 32
SENTINELS = tuple(range(1, 100))  # [unused1] to [unused99] of the bundled vocabulary
MASK, SEP = 103, 102


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(dict(type="bert", vocab_path=str(VOCAB)))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpora")
    paths = {}
    for name, source, lines in (("lines", "corpora/book_review.txt", 150), ("docs", "corpora/book_review_bert.txt", 300)):
        text = (ROOT / source).read_text(encoding="utf-8").split("\n")[:lines]
        paths[name] = directory / f"{name}.txt"
        paths[name].write_text("\n".join(text) + "\n", encoding="utf-8")
    paths["parallel"] = PARALLEL
    return paths


CORPUS = {"seq2seq": "parallel", "prefixlm": "parallel", "t5": "lines", "bart": "docs"}


def build(tok, corpora, path, target, **kwargs):
    return build_pretrain_dataset(corpora[CORPUS[target]], path, tok, target, seq_length=SEQ, **kwargs)


def restore_t5(source, target):
    """The text a T5 pair was made from: each sentinel of the source replaced by its span from the target."""
    spans, current = {}, None
    for token in target.tolist():
        if token in SENTINELS:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    return [t for token in source.tolist() for t in (spans[token] if token in spans else [token])]


def test_t5_noising_keeps_every_token_exactly_once_and_holds_its_rates():
    rng = np.random.default_rng(0)
    noise = spans = tokens = 0
    for density, mean in ((0.15, 3.0), (0.5, 1.0), (0.3, 8.0)):
        scheme = SpanCorruption(density, mean, SENTINELS)
        for _ in range(300):
            body = rng.integers(200, 20000, size=int(rng.integers(2, 120)))
            source, target = scheme.apply(body, rng)
            assert restore_t5(source, target) == body.tolist()
            used = [t for t in source.tolist() if t in SENTINELS]
            assert used == list(SENTINELS[:len(used)]) == [t for t in target.tolist() if t in SENTINELS]
            assert not any(a in SENTINELS and b in SENTINELS for a, b in zip(source[:-1], source[1:]))
            if density == 0.15:
                noise += len(target) - len(used)
                spans += len(used)
                tokens += len(body)
    assert abs(noise / tokens - 0.15) < 0.01
    assert abs(noise / spans - 3.0) < 0.4


@pytest.mark.parametrize("permute", [False, True])
def test_bart_infilling_keeps_the_original_as_the_label(permute):
    rng = np.random.default_rng(1)
    scheme = TextInfilling(0.3, 3.0, permute, MASK, SEP)
    masked = tokens = 0
    for _ in range(300):
        sentences = [rng.integers(200, 20000, size=int(rng.integers(1, 15))) for _ in range(int(rng.integers(1, 5)))]
        body = np.concatenate([part for k, s in enumerate(sentences) for part in ([np.array([SEP])] if k else []) + [s]])
        source, target = scheme.apply(body, rng)
        assert target.tolist() == body.tolist()
        kept = [t for t in source.tolist() if t != MASK]
        masked += len(body) - len(kept)
        tokens += len(body)
        if not permute:  # the kept tokens in their order, each masked span one [MASK]
            it = iter(body.tolist())
            assert all(token in it for token in kept)
        else:  # shuffled: every kept token is one of the text's
            assert not Counter(kept) - Counter(body.tolist())
    assert abs(masked / tokens - 0.3) < 0.02


@pytest.mark.parametrize("target, kwargs", [("seq2seq", {}), ("prefixlm", {}), ("t5", {}), ("t5", {"dup_factor": 2}),
                                            ("bart", {}), ("bart", {"dynamic_masking": True})])
def test_processes_num_does_not_change_a_byte(tok, corpora, tmp_path, monkeypatch, target, kwargs):
    monkeypatch.setattr(build_module, "UNIT_BYTES", 4096)  # several units from a small corpus
    monkeypatch.setattr(build_module, "_start_method", lambda: "fork")
    build(tok, corpora, tmp_path / "one", target, processes_num=1, **kwargs)
    build(tok, corpora, tmp_path / "two", target, processes_num=2, **kwargs)
    files = [{p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())} for name in ("one", "two")]
    assert files[0] == files[1]


def test_seq2seq_pairs_hold_the_tokenized_columns(tok, corpora, tmp_path):
    build(tok, corpora, tmp_path / "ds", "seq2seq", tgt_seq_length=12)
    dataset = PretrainDataset(tmp_path / "ds")
    assert dataset.meta["tgt_seq_length"] == 12
    rows = [line.split("\t") for line in PARALLEL.read_text(encoding="utf-8").splitlines()[:4]]
    batch = dataset.batch(np.arange(4), 0, 7)
    assert set(batch) == {"src", "seg", "tgt_in", "tgt_out"}
    vocab = tok.vocab
    for row, (source, target) in enumerate(rows):
        src_ids, tgt_ids = tok.encode(source)[:SEQ - 2], tok.encode(target)[:11]
        length = len(src_ids) + 2
        assert batch["src"][row, :length].tolist() == [vocab.cls_id, *src_ids, vocab.sep_id]
        assert not batch["src"][row, length:].any() and batch["seg"][row].tolist() == [1] * length + [0] * (
            batch["src"].shape[1] - length)
        width = len(tgt_ids) + 1
        assert batch["tgt_in"][row, :width].tolist() == [vocab.cls_id, *tgt_ids]
        assert batch["tgt_out"][row, :width].tolist() == [*tgt_ids, vocab.sep_id]
        assert not batch["tgt_in"][row, width:].any() and not batch["tgt_out"][row, width:].any()
    assert batch["tgt_in"].shape[1] <= 12


def test_prefixlm_labels_only_the_target(tok, corpora, tmp_path):
    build(tok, corpora, tmp_path / "ds", "prefixlm")
    batch = PretrainDataset(tmp_path / "ds").batch(np.arange(6), 0, 7)
    for src, seg, labels in zip(batch["src"], batch["seg"], batch["lm_labels"]):
        prefix = int((seg == 1).sum())
        assert src[prefix - 1] == tok.vocab.sep_id and (labels[:prefix - 1] == -100).all()
        real = int((seg != 0).sum())
        assert labels[prefix - 1:real - 1].tolist() == src[prefix:real].tolist()
        assert labels[real - 1] == tok.vocab.sep_id and (labels[real:] == -100).all()
        assert real <= SEQ


@pytest.mark.parametrize("target", ["t5", "bart"])
def test_static_and_dynamic_noising_batches(tok, corpora, tmp_path, target):
    build(tok, corpora, tmp_path / "static", target)
    build(tok, corpora, tmp_path / "dynamic", target, dynamic_masking=True)
    static, dynamic = PretrainDataset(tmp_path / "static"), PretrainDataset(tmp_path / "dynamic")
    assert len(static) == len(dynamic)
    rows = np.arange(8)
    a, b = dynamic.batch(rows, 0, 7), dynamic.batch(rows, 1, 7)
    assert all(a[k].equal(dynamic.batch(rows, 0, 7)[k]) for k in a)  # same epoch, same noise
    assert not all(a[k].shape == b[k].shape and a[k].equal(b[k]) for k in a)  # another epoch, other noise
    cls, sep = tok.vocab.cls_id, tok.vocab.sep_id
    for batch in (static.batch(rows, 0, 7), a, b):
        assert set(batch) == {"src", "seg", "tgt_in", "tgt_out"}
        assert batch["src"].shape[1] <= SEQ and batch["tgt_in"].shape == batch["tgt_out"].shape
        assert (batch["seg"] == (batch["src"] != 0).long()).all()
        assert (batch["tgt_in"][:, 0] == cls).all()
        for row in range(len(rows)):
            length = int((batch["tgt_out"][row] != 0).sum())
            assert batch["tgt_out"][row, length - 1] == sep
            assert batch["tgt_in"][row, 1:length].equal(batch["tgt_out"][row, :length - 1])
            clean = np.asarray(dynamic._tokens[dynamic._offsets[row] + 1:dynamic._offsets[row + 1]], np.int64)
            source = batch["src"][row][batch["seg"][row] == 1].numpy()[1:-1]
            target_ids = batch["tgt_out"][row, :length - 1].numpy()
            if target == "t5":
                assert restore_t5(source, target_ids) == clean.tolist()
            else:
                assert target_ids.tolist() == clean.tolist()


def test_t5_refuses_a_vocabulary_without_sentinels(tmp_path, corpora):
    tokens = [t for t in VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n") if not t.startswith("[unused")]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    small = build_tokenizer(dict(type="bert", vocab_path=str(vocab)))
    with pytest.raises(UerError, match=r"vocabulary .*vocab.txt has 0 sentinel tokens .* needs \d+; add \[unused1\]"):
        build(small, corpora, tmp_path / "ds", "t5")
    assert not (tmp_path / "ds").exists()


def test_a_line_without_the_target_column_names_file_and_line(tok, tmp_path):
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("源\t目标\n只有源\n", encoding="utf-8")
    for target in ("seq2seq", "prefixlm"):
        with pytest.raises(UerError, match=rf"{corpus}:2: a target={target} corpus line is source<TAB>target"):
            build_pretrain_dataset(corpus, tmp_path / target, tok, target, seq_length=SEQ)
        assert not (tmp_path / target).exists()


def test_preprocess_stage_builds_the_decoder_targets(tok, tmp_path, corpora):
    """The stage function with target.type set to a builder that no target option names yet."""
    for target, option in (("t5", "preprocess.t5_noise_density=0.3"), ("seq2seq", "preprocess.tgt_seq_length=10")):
        cfg = compose_config(["stage=preprocess", "target=lm", f"preprocess.corpus_path={corpora[CORPUS[target]]}",
                              f"preprocess.dataset_path={tmp_path / target}", "preprocess.seq_length=24", option])
        cfg.target.type = target
        preprocess_stage.run(cfg)
        meta = PretrainDataset(tmp_path / target).meta
        assert meta["target"] == target and meta["seq_length"] == 24
        if target == "t5":
            assert meta["noising"]["noise_density"] == 0.3 and meta["tgt_seq_length"] == 24
        else:
            assert meta["tgt_seq_length"] == 10
    with pytest.raises(UerError, match="preprocess.tgt_seq_length applies to target=seq2seq only"):
        build(tok, corpora, tmp_path / "t5_cut", "t5", tgt_seq_length=10)
    assert not (tmp_path / "t5_cut").exists()


@pytest.mark.parametrize("target, kwargs, message", [
    ("seq2seq", {"dynamic_masking": True}, "dynamic_masking applies to the masked-LM targets"),
    ("t5", {"t5_noise_density": 1.0}, r"t5_noise_density=1.0 must lie in \(0, 1\)"),
    ("t5", {"t5_mean_span_length": 0.5}, "t5_mean_span_length=0.5 must be at least 1"),
    ("bart", {"bart_mask_ratio": 1.0}, r"bart_mask_ratio=1.0 must lie in \[0, 1\)"),
    ("bart", {"bart_poisson_lambda": 0}, "bart_poisson_lambda=0 must be positive"),
    ("seq2seq", {"tgt_seq_length": 1}, "tgt_seq_length=1 must be at least 2"),
])
def test_bad_options(tok, corpora, tmp_path, target, kwargs, message):
    with pytest.raises(UerError, match=message):
        build(tok, corpora, tmp_path / "ds", target, **kwargs)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("target, kwargs", [("t5", {"t5_noise_density": 0.4, "t5_mean_span_length": 2.0}),
                                            ("bart", {"bart_mask_ratio": 0.2, "bart_permute_sentences": False}),
                                            ("seq2seq", {"tgt_seq_length": 9})])
def test_held_out_corpus_is_built_with_the_training_settings(tok, corpora, tmp_path, target, kwargs):
    build(tok, corpora, tmp_path / "train", target, **kwargs)
    dev = build_dev_dataset(str(corpora[CORPUS[target]]), str(tmp_path / "train"), tok, tmp_path / "run")
    train_meta, dev_meta = (PretrainDataset(path).meta for path in (tmp_path / "train", dev))
    assert dev_meta.get("noising") == train_meta.get("noising")
    assert dev_meta["tgt_seq_length"] == train_meta["tgt_seq_length"]


def test_the_training_loops_batches_are_the_same_built_ahead_in_workers(tok, corpora, tmp_path):
    """Dynamic T5 noising through the pre-training batch source: worker processes build the batches the
    training process would, over an epoch boundary, padded to each batch's longest row."""
    build(tok, corpora, tmp_path / "ds", "t5", dynamic_masking=True)
    dataset = PretrainDataset(tmp_path / "ds")
    sources = [BatchSource(dataset, EpochSampler(len(dataset), 64, 7, lengths=dataset.lengths()), 7, workers=workers)
               for workers in (0, 2)]
    steps = 2 * (len(dataset) // 64) + 1
    try:
        for _ in range(steps):
            here, ahead = (source.next_batch() for source in sources)
            assert here.keys() == ahead.keys() == {"src", "seg", "tgt_in", "tgt_out"}
            assert all(here[key].equal(ahead[key]) for key in here)
            assert (here["src"][:, -1] != 0).any() and (here["tgt_out"][:, -1] != 0).any()
    finally:
        for source in sources:
            source.close()


def test_sentinels_are_t5s_own_tokens_where_the_vocabulary_has_them():
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "[unused2]", "<extra_id_0>", "<extra_id_1>",
              "<extra_id_2>", "a"]
    vocab = Vocab.from_tokens(tokens, "t5_vocab.txt")
    assert sentinel_ids(vocab, 3, SEQ) == (7, 8, 9)
    assert sentinel_ids(Vocab.from_tokens(tokens[:7] + ["a"], "bert_vocab.txt"), 2, SEQ) == (5, 6)
    with pytest.raises(UerError, match=r"vocabulary t5_vocab.txt has 3 sentinel tokens .* needs 4; add "
                                       r"<extra_id_0> to <extra_id_3> to the vocabulary"):
        sentinel_ids(vocab, 4, SEQ)
