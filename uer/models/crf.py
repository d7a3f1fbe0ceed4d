"""A linear-chain conditional random field over per-position tag scores.

A tag path ``y_1 .. y_n`` of a sentence with emissions ``e`` (one score per position and
tag) scores ``start[y_1] + sum_t e[t, y_t] + sum_t trans[y_(t-1), y_t] + end[y_n]``; the
model's probability of a path is its exponentiated score over the sum of all paths'
(the partition function, computed by the forward algorithm).  Training minimises the
gold path's negative log-likelihood; decoding takes the best path (Viterbi).  Every
transition is allowed: the scores learn which are rare (nothing forbids ``O`` -> ``I-X``).

Batches are right-padded: ``mask`` (B, L) is True on each row's real positions, which
come first.  A row with no real position scores 0 and decodes to tag 0 everywhere.
"""

from __future__ import annotations

import torch
from torch import nn


class Crf(nn.Module):
    def __init__(self, tags_num: int):
        super().__init__()
        self.tags_num = tags_num
        #: ``transitions[i, j]``: the score of tag ``j`` right after tag ``i``
        self.transitions = nn.Parameter(torch.empty(tags_num, tags_num))
        self.start = nn.Parameter(torch.empty(tags_num))  # the score of a path beginning with each tag
        self.end = nn.Parameter(torch.empty(tags_num))  # the score of a path ending with each tag
        for parameter in (self.transitions, self.start, self.end):
            nn.init.uniform_(parameter, -0.1, 0.1)

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) scores of the paths ``tags`` (B, L); padded positions may hold any value."""
        tags = tags.masked_fill(~mask, 0)
        keep = mask.to(emissions.dtype)
        score = (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * keep).sum(dim=1)
        score = score + self.start[tags[:, 0]] * keep[:, 0]
        score = score + (self.transitions[tags[:, :-1], tags[:, 1:]] * keep[:, 1:]).sum(dim=1)
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        return score + self.end[tags.gather(1, last.unsqueeze(1)).squeeze(1)] * keep[:, 0]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) log of the summed exponentiated scores of every path (the forward algorithm)."""
        alpha = self.start + emissions[:, 0]  # (B, T): log-sum over paths ending in each tag so far
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t:t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1) * mask[:, 0].to(emissions.dtype)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) negative log-likelihood of each row's gold path."""
        if emissions.size(1) == 0:  # a batch of rows without positions
            return emissions.new_zeros(emissions.size(0))
        return self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) the best path of each row (Viterbi); a padded position repeats the row's last tag."""
        steps = emissions.size(1)
        if steps == 0:  # a batch of rows without positions
            return emissions.new_zeros(emissions.shape[:2], dtype=torch.long)
        score = self.start + emissions[:, 0]
        stay = torch.arange(self.tags_num, device=emissions.device).expand_as(score)
        back = []  # back[t - 1][b, j]: the best tag at t - 1 before tag j at t
        for t in range(1, steps):
            best, previous = (score.unsqueeze(2) + self.transitions).max(dim=1)
            here = mask[:, t:t + 1]
            score = torch.where(here, best + emissions[:, t], score)
            back.append(torch.where(here, previous, stay))  # through padding, the tag stays
        path = [(score + self.end).argmax(dim=1)]
        for previous in reversed(back):
            path.append(previous.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        path.reverse()
        return torch.stack(path, dim=1) * mask[:, :1]
