"""The CRF against brute force over every tag path of small sentences."""

import itertools

import pytest
import torch

from uer.models.crf import Crf

TAGS = 3


def brute_force(crf, emissions, length):
    """(log-partition, best path, scores of all paths) of one row's first ``length`` positions."""
    scores = {}
    for path in itertools.product(range(TAGS), repeat=length):
        score = crf.start[path[0]] + crf.end[path[-1]]
        score = score + sum(emissions[t, tag] for t, tag in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = score
    values = torch.stack(list(scores.values()))
    return torch.logsumexp(values, dim=0), max(scores, key=lambda p: scores[p].item()), scores


@pytest.fixture(params=range(4))
def batch(request):
    """A CRF with random scores and a batch of rows of lengths 4, 1, 3, 2 (padded to 4)."""
    torch.manual_seed(request.param)
    crf = Crf(TAGS)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter, std=2.0)
    lengths = [4, 1, 3, 2]
    emissions = torch.randn(len(lengths), 4, TAGS) * 2
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return crf, emissions, mask, lengths


def test_viterbi_and_log_partition_equal_brute_force_over_all_paths(batch):
    crf, emissions, mask, lengths = batch
    with torch.no_grad():
        decoded = crf.decode(emissions, mask)
        log_z = crf.log_partition(emissions, mask)
        for row, length in enumerate(lengths):
            expected, best, _ = brute_force(crf, emissions[row], length)
            assert tuple(decoded[row, :length].tolist()) == best
            torch.testing.assert_close(log_z[row], expected, rtol=1e-5, atol=1e-5)


def test_nll_of_a_path_is_minus_its_log_probability(batch):
    crf, emissions, mask, lengths = batch
    torch.manual_seed(7)
    tags = torch.randint(0, TAGS, mask.shape).masked_fill(~mask, -100)  # padding holds a label to ignore
    with torch.no_grad():
        nll = crf.nll(emissions, tags, mask)
        for row, length in enumerate(lengths):
            log_z, _, scores = brute_force(crf, emissions[row], length)
            path = tuple(tags[row, :length].tolist())
            torch.testing.assert_close(nll[row], log_z - scores[path], rtol=1e-5, atol=1e-5)
    # The probabilities of all paths of a row sum to 1.
    row_log_z, _, scores = brute_force(crf, emissions[2], 3)
    assert torch.exp(torch.stack(list(scores.values())) - row_log_z).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_padding_changes_nothing_and_empty_rows_score_zero():
    torch.manual_seed(0)
    crf = Crf(TAGS)
    emissions = torch.randn(1, 3, TAGS)
    tags = torch.tensor([[2, 0, 1]])
    alone = crf.nll(emissions, tags, torch.ones(1, 3, dtype=torch.bool))
    padded_emissions = torch.cat([emissions, torch.randn(1, 2, TAGS)], dim=1)
    padded_mask = torch.tensor([[True, True, True, False, False]])
    padded = crf.nll(padded_emissions, torch.tensor([[2, 0, 1, 1, 2]]), padded_mask)
    torch.testing.assert_close(alone, padded)
    assert crf.decode(padded_emissions, padded_mask)[0, :3].tolist() == crf.decode(
        emissions, torch.ones(1, 3, dtype=torch.bool))[0].tolist()
    empty = torch.zeros(1, 3, dtype=torch.bool)
    assert crf.nll(emissions, tags, empty).item() == 0.0
    assert crf.decode(emissions, empty).tolist() == [[0, 0, 0]]
    no_positions = torch.zeros(2, 0, TAGS)  # a batch of rows holding only [CLS]
    assert crf.decode(no_positions, torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)
    assert crf.nll(no_positions, torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool)).tolist() == [0, 0]


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    crf = Crf(TAGS)
    emissions = torch.randn(2, 3, TAGS, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    crf.nll(emissions, torch.tensor([[0, 1, 2], [2, 2, 0]]), mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in crf.parameters())
    assert emissions.grad[1, 2].abs().sum() == 0  # padding gets no gradient
