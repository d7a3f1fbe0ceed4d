"""mask_instances: budget, 80/10/10 corruption, span masking, determinism."""

import numpy as np
import pytest

from uer.data.masking import MaskingScheme, mask_instances

CLS, SEP, MASK = 1, 2, 3
SPECIAL = (0, 1, 2, 3, 4)


def make_block(n=400, seed=0, low=8, high=64):
    """n instances [CLS] x... [SEP] y... [SEP] of random ordinary tokens."""
    rng = np.random.default_rng(seed)
    parts = []
    for length in rng.integers(low, high, size=n):
        body = rng.integers(5, 1000, size=length).astype(np.uint16)
        cut = length // 2
        parts.append(np.concatenate(([CLS], body[:cut], [SEP], body[cut:], [SEP])).astype(np.uint16))
    offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts])))
    return np.concatenate(parts), offsets


def scheme(**kwargs):
    return MaskingScheme(vocab_size=1000, mask_id=MASK, special_ids=SPECIAL, **kwargs)


def split(result, offsets):
    starts = np.concatenate(([0], np.cumsum(result.counts)))
    for i in range(len(offsets) - 1):
        yield i, result.positions[starts[i]:starts[i + 1]], result.labels[starts[i]:starts[i + 1]]


@pytest.mark.parametrize("span", [False, True])
def test_budget_and_labels(span):
    tokens, offsets = make_block()
    result = mask_instances(tokens, offsets, np.random.default_rng(1), scheme(span_masking=span))
    special = np.isin(tokens, SPECIAL)
    for i, positions, labels in split(result, offsets):
        start, end = offsets[i], offsets[i + 1]
        maskable = int((~special[start:end]).sum())
        assert len(positions) == max(1, round(0.15 * maskable))
        assert np.all(np.diff(positions) > 0)
        assert not special[start + positions].any(), "special tokens must never be chosen"
        np.testing.assert_array_equal(labels, tokens[start + positions])
    untouched = np.ones(len(tokens), dtype=bool)
    untouched[np.repeat(offsets[:-1], result.counts) + result.positions] = False
    np.testing.assert_array_equal(result.tokens[untouched], tokens[untouched])
    assert result.tokens is not tokens and tokens.dtype == result.tokens.dtype


def test_80_10_10():
    tokens, offsets = make_block(n=2000)
    result = mask_instances(tokens, offsets, np.random.default_rng(2), scheme())
    flat = np.repeat(offsets[:-1], result.counts) + result.positions
    new = result.tokens[flat]
    as_mask = np.mean(new == MASK)
    kept = np.mean(new == result.labels)
    randomized = new[(new != MASK) & (new != result.labels)]
    assert 0.77 < as_mask < 0.83
    assert 0.08 < kept < 0.12
    assert 0.08 < len(randomized) / len(new) < 0.12
    assert not np.isin(randomized, SPECIAL).any()


def test_masked_fraction_is_15_percent_of_ordinary_tokens():
    tokens, offsets = make_block(n=1000, low=60, high=120)
    result = mask_instances(tokens, offsets, np.random.default_rng(3), scheme())
    assert abs(len(result.positions) / np.sum(~np.isin(tokens, SPECIAL)) - 0.15) < 0.005


def test_instance_without_ordinary_tokens_gets_no_mask():
    tokens = np.array([CLS, SEP, CLS, 7, SEP], dtype=np.int32)
    result = mask_instances(tokens, np.array([0, 2, 5]), np.random.default_rng(0), scheme())
    np.testing.assert_array_equal(result.counts, [0, 1])
    np.testing.assert_array_equal(result.positions, [1])


@pytest.mark.parametrize("span", [False, True])
def test_same_rng_same_masks_other_rng_other_masks(span):
    tokens, offsets = make_block()
    s = scheme(span_masking=span)
    a = mask_instances(tokens, offsets, np.random.default_rng([7, 0]), s)
    b = mask_instances(tokens, offsets, np.random.default_rng([7, 0]), s)
    c = mask_instances(tokens, offsets, np.random.default_rng([7, 1]), s)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions, c.positions)


def runs(positions):
    """Lengths of the maximal runs of consecutive positions."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    return np.diff(np.concatenate(([0], breaks + 1, [len(positions)]))).tolist()


def test_span_masking_chooses_contiguous_runs_with_one_decision_each():
    tokens, offsets = make_block(n=600, low=100, high=120)
    spans = mask_instances(tokens, offsets, np.random.default_rng(4), scheme(span_masking=True))
    single = mask_instances(tokens, offsets, np.random.default_rng(4), scheme())
    span_runs, single_runs = [], []
    uniform = total = 0
    for (i, positions, labels), (_, single_positions, _) in zip(split(spans, offsets), split(single, offsets)):
        span_runs += runs(positions)
        single_runs += runs(single_positions)
        start = offsets[i]
        for run_positions in np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1):
            is_mask = spans.tokens[start + run_positions] == MASK
            uniform += bool(is_mask.all() or not is_mask.any())
            total += 1
    assert np.mean(span_runs) > 2.5 > 1.3 > np.mean(single_runs)
    assert max(span_runs) <= 2 * 10, "runs come from spans of at most span_max_length (two may touch)"
    assert uniform / total > 0.9, "the 80/10/10 decision is taken per span"


def test_span_max_length_one_gives_single_tokens():
    tokens, offsets = make_block(n=300, low=100, high=120)
    result = mask_instances(tokens, offsets, np.random.default_rng(5), scheme(span_masking=True, span_max_length=1))
    lengths = [r for _, positions, _ in split(result, offsets) for r in runs(positions)]
    assert np.mean(lengths) < 1.3


def test_scheme_round_trips_through_dict():
    s = scheme(span_masking=True, span_geo_prob=0.3, span_max_length=4)
    assert MaskingScheme.from_dict(s.to_dict()) == s
