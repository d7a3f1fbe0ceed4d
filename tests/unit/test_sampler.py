"""Batch order: epochs cover the data, ranks are disjoint, state resumes exactly, bucketing cuts padding."""

import numpy as np
import pytest

from uer.data.sampler import EpochSampler
from uer.errors import UerError


def take(sampler, n):
    return [sampler.next_indices() for _ in range(n)]


@pytest.mark.parametrize("bucketed", [False, True])
def test_epoch_covers_each_instance_once(bucketed):
    lengths = np.random.default_rng(0).integers(5, 128, size=100) if bucketed else None
    sampler = EpochSampler(100, 10, seed=3, lengths=lengths)
    batches = take(sampler, 10)
    assert all(epoch == 0 for _, epoch in batches)
    assert sorted(np.concatenate([b for b, _ in batches]).tolist()) == list(range(100))
    assert sampler.next_indices()[1] == 1


def test_ranks_take_disjoint_slices_of_each_global_batch():
    seen = [np.concatenate([b for b, _ in take(EpochSampler(64, 4, 1, rank=r, world_size=2), 8)]) for r in (0, 1)]
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 64


@pytest.mark.parametrize("bucketed", [False, True])
def test_state_dict_replays_the_same_batches(bucketed):
    lengths = np.arange(50) % 17 if bucketed else None
    a = EpochSampler(50, 4, 9, lengths=lengths)
    take(a, 15)  # crosses an epoch boundary (12 batches per epoch)
    b = EpochSampler(50, 4, 9, lengths=lengths)
    b.load_state_dict(a.state_dict())
    for (x, ex), (y, ey) in zip(take(a, 20), take(b, 20)):
        assert ex == ey and np.array_equal(x, y)


def test_bucketing_reduces_padding():
    lengths = np.random.default_rng(1).integers(10, 128, size=2000)

    def padded_tokens(sampler):
        return sum(len(b) * lengths[b].max() for b, _ in take(sampler, 125))

    plain = padded_tokens(EpochSampler(2000, 16, 5))
    bucketed = padded_tokens(EpochSampler(2000, 16, 5, lengths=lengths))
    assert bucketed < 0.7 * plain


def test_too_few_instances_for_a_batch_is_a_clear_error():
    with pytest.raises(UerError, match="fewer than one batch"):
        EpochSampler(3, 4, 0, source="dataset d")


def test_resume_on_another_dataset_is_refused():
    state = EpochSampler(40, 4, 0).state_dict()
    with pytest.raises(UerError, match="same dataset_path"):
        EpochSampler(41, 4, 0).load_state_dict(state)
