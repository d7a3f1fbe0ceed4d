"""pretrain.data_workers: batches built by worker processes are the in-loop ones, and the sampler
position a checkpoint stores counts only the batches handed to the model."""

import pytest
import torch

from uer.data.build import build_pretrain_dataset
from uer.data.prefetch import BatchSource
from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, compose_config, expect_user_error

BATCH = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Dynamic masking, one review per row (rows of different lengths): about 8 batches an epoch."""
    directory = tmp_path_factory.mktemp("prefetch")
    corpus = directory / "corpus.txt"
    lines = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()[:70]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = build_tokenizer({"type": "bert", "vocab_path": str(ROOT / "models/google_zh_vocab.txt")})
    build_pretrain_dataset(corpus, directory / "data", tok, "mlm", seq_length=64, dynamic_masking=True)
    return PretrainDataset(directory / "data")


def sampler(dataset):
    return EpochSampler(len(dataset), BATCH, 3, lengths=dataset.lengths())


def take(source: BatchSource, count: int) -> list[dict]:
    out = []
    for _ in range(count):
        out.append(source.next_batch())
        out[-1]["position"] = torch.tensor([source.sampler.epoch, source.sampler.cursor])
    return out


def assert_same(first: list[dict], second: list[dict]):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_workers_build_the_in_loop_batches_across_epochs(dataset):
    in_loop = BatchSource(dataset, sampler(dataset), 3)
    ahead = BatchSource(dataset, sampler(dataset), 3, workers=2)
    try:
        count = 3 * in_loop.sampler.batches_per_epoch + 2  # into a fourth epoch: new permutations and masks
        expected, got = take(in_loop, count), take(ahead, count)
    finally:
        ahead.close()
    assert len({int(b["position"][0]) for b in expected}) == 4
    assert_same(expected, got)


def test_starting_workers_leaves_the_global_random_stream_alone(dataset):
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    source = BatchSource(dataset, sampler(dataset), 3, workers=1)
    try:
        source.next_batch()
        assert torch.equal(torch.rand(4), expected)  # dropout masks of the run stay those of an in-loop run
    finally:
        source.close()


def test_a_resumed_source_continues_from_the_taken_batches_not_the_prefetched_ones(dataset):
    uninterrupted = take(BatchSource(dataset, sampler(dataset), 3), 12)
    first = BatchSource(dataset, sampler(dataset), 3, workers=1)
    try:
        take(first, 5)
        state = first.sampler.state_dict()  # what a checkpoint after 5 steps stores; workers are further on
    finally:
        first.close()
    restored = sampler(dataset)
    restored.load_state_dict(state)
    second = BatchSource(dataset, restored, 3, workers=1)
    try:
        assert_same(uninterrupted[5:], take(second, 7))
    finally:
        second.close()


def test_negative_data_workers_is_a_user_error(tmp_path, capsys):
    """Refused by the key's bounds before the dataset (here: none) is opened."""
    cfg = compose_config(["stage=pretrain", "pretrain.data_workers=-1", f"pretrain.dataset_path={tmp_path}"])
    expect_user_error(capsys, cfg, "pretrain.data_workers=-1 must be at least 0")
