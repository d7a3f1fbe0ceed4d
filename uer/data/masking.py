"""Choosing and corrupting the tokens a masked language model has to predict.

One function, :func:`mask_instances`, serves both static masking (at preprocess time,
once per stored instance) and dynamic masking (at batch time, with an RNG derived from
the epoch), so both draw from exactly the same distribution:

* 15% of the maskable (non-special) tokens of each instance are chosen, at least one;
* of the chosen tokens 80% become ``[MASK]``, 10% a random non-special token and 10%
  stay unchanged -- with span masking this decision is taken once per span.

Span masking (SpanBERT) chooses spans instead of single tokens: span lengths follow a
geometric distribution with parameter ``span_geo_prob``, clipped to ``span_max_length``
and to the remaining budget, so exactly the same number of tokens is chosen as without
spans.  A span never crosses a special token (such as the ``[SEP]`` between segments).

Whole-word masking (``whole_word_masking``: RoBERTa-wwm, MacBERT) chooses words: the
caller passes, per token, whether it starts a word (:mod:`uer.data.segmentation`; a
special token, the token after one and the first token of an instance always do).  The
words of an instance are visited in random order and each is taken whole while it fits
in the same budget as above (a longer word is skipped, as in Google BERT's
``--do_whole_word_mask``), so at most the budget is chosen -- exactly it unless only
words too long for the rest remain; when not even one word fits, the first word drawn
is taken alone, so every instance still predicts something.  One 80/10/10 draw per word.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

MASK_RATIO = 0.15
REPLACE_WITH_MASK = 0.8
REPLACE_WITH_RANDOM = 0.1


@dataclass(frozen=True)
class MaskingScheme:
    """Everything masking needs to know; stored in the dataset's meta.json for batch time."""

    vocab_size: int
    mask_id: int
    special_ids: tuple[int, ...]
    span_masking: bool = False
    span_geo_prob: float = 0.2
    span_max_length: int = 10
    whole_word_masking: bool = False

    def to_dict(self) -> dict:
        data = {**asdict(self), "special_ids": list(self.special_ids)}
        if not self.whole_word_masking:  # datasets without it keep the meta.json they always had
            del data["whole_word_masking"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "MaskingScheme":
        return cls(**{**data, "special_ids": tuple(data["special_ids"])})

    @cached_property
    def is_special(self) -> np.ndarray:
        """Lookup table id -> bool."""
        table = np.zeros(self.vocab_size, dtype=bool)
        table[list(self.special_ids)] = True
        return table

    @cached_property
    def random_pool(self) -> np.ndarray:
        """The ids a chosen token may be replaced with (all but the special ones)."""
        return np.flatnonzero(~self.is_special)


@dataclass
class MaskedInstances:
    """Result of :func:`mask_instances` for a block of instances.

    ``positions`` are relative to the start of their instance and ascending within it;
    ``labels`` hold the original ids there; ``counts`` says how many belong to each instance.
    """

    tokens: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    counts: np.ndarray


def mask_instances(tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator,
                   scheme: MaskingScheme, word_starts: np.ndarray | None = None) -> MaskedInstances:
    """Mask every instance of a flat block; instance ``i`` is ``tokens[offsets[i]:offsets[i+1]]``.

    ``tokens`` is not modified.  All random draws come from ``rng``, so a given
    (block, rng state) always gives the same result.  ``word_starts`` (a bool per token)
    is required by, and only read with, ``scheme.whole_word_masking``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    instance_of = np.repeat(np.arange(len(lengths)), lengths)
    maskable = ~scheme.is_special[tokens]
    budgets = _budgets(np.bincount(instance_of[maskable], minlength=len(lengths)))
    if scheme.whole_word_masking:
        if word_starts is None or len(word_starts) != len(tokens):
            raise ValueError("whole-word masking needs word_starts, one per token")
        starts = _word_starts(word_starts, offsets, ~maskable)
        chosen, draws = _choose_words(maskable, starts, offsets, budgets, rng)
    elif scheme.span_masking:
        chosen, draws = _choose_spans(maskable, offsets, budgets, rng, scheme)
    else:
        chosen = _choose_tokens(maskable, instance_of, budgets, rng)
        draws = rng.random(len(chosen))

    corrupted = tokens.copy()
    corrupted[chosen[draws < REPLACE_WITH_MASK]] = scheme.mask_id
    randomized = chosen[(draws >= REPLACE_WITH_MASK) & (draws < REPLACE_WITH_MASK + REPLACE_WITH_RANDOM)]
    pool = scheme.random_pool
    corrupted[randomized] = pool[rng.integers(len(pool), size=len(randomized))].astype(tokens.dtype)

    owner = instance_of[chosen]
    return MaskedInstances(
        tokens=corrupted,
        positions=chosen - offsets[owner],
        labels=tokens[chosen],
        counts=np.bincount(owner, minlength=len(lengths)),
    )


def _budgets(maskable_counts: np.ndarray) -> np.ndarray:
    """How many tokens to choose per instance: 15% rounded, at least one if any is maskable."""
    budgets = np.rint(maskable_counts * MASK_RATIO).astype(np.int64)
    return np.where(maskable_counts > 0, np.maximum(budgets, 1), 0)


def _choose_tokens(maskable: np.ndarray, instance_of: np.ndarray, budgets: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Flat positions of ``budgets[i]`` uniformly chosen maskable tokens of every instance.

    Vectorised over the block: sort the candidates by ``instance + key/2`` with a random
    key in [0, 1) -- a shuffle within each instance -- and keep the first ``budget`` of each.
    """
    candidates = np.flatnonzero(maskable)
    owners = instance_of[candidates]
    order = np.argsort(owners + 0.5 * rng.random(len(candidates)))
    owners_sorted = owners[order]
    rank = np.arange(len(order)) - np.searchsorted(owners_sorted, owners_sorted, side="left")
    return np.sort(candidates[order[rank < budgets[owners_sorted]]])


def _choose_spans(maskable: np.ndarray, offsets: np.ndarray, budgets: np.ndarray,
                  rng: np.random.Generator, scheme: MaskingScheme) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions chosen span by span, and one 80/10/10 draw per span repeated over it.

    Per instance: visit the maskable positions in random order as span starts; from each
    start not yet covered, extend over maskable, uncovered tokens up to the drawn length.
    """
    chosen, draws = [], []
    for start, end, budget in zip(offsets[:-1].tolist(), offsets[1:].tolist(), budgets.tolist()):
        if budget == 0:
            continue
        free = maskable[start:end].copy()
        starts = rng.permutation(np.flatnonzero(free)).tolist()
        lengths = np.minimum(rng.geometric(scheme.span_geo_prob, size=len(starts)),
                             scheme.span_max_length).tolist()
        spans = []
        for span_start, length in zip(starts, lengths):
            if budget == 0:
                break
            if not free[span_start]:
                continue
            span_end = span_start
            limit = min(span_start + min(length, budget), end - start)
            while span_end < limit and free[span_end]:
                span_end += 1
            free[span_start:span_end] = False
            spans.append((span_start, span_end))
            budget -= span_end - span_start
        spans.sort()
        span_draws = rng.random(len(spans))
        for (span_start, span_end), draw in zip(spans, span_draws.tolist()):
            chosen.append(np.arange(start + span_start, start + span_end))
            draws.append(np.full(span_end - span_start, draw))
    if not chosen:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(chosen), np.concatenate(draws)


def _word_starts(word_starts: np.ndarray, offsets: np.ndarray, special: np.ndarray) -> np.ndarray:
    """The stored word starts, plus: every special token and the token after it, every instance's first token
    (a word cut by an instance boundary or a truncation is a word of its own there)."""
    starts = np.asarray(word_starts, dtype=bool) | special
    starts[1:] |= special[:-1]
    starts[offsets[:-1][np.diff(offsets) > 0]] = True
    return starts


def _choose_words(maskable: np.ndarray, starts: np.ndarray, offsets: np.ndarray, budgets: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of whole words chosen within each instance's budget, one 80/10/10 draw per word."""
    word_bounds = np.append(np.flatnonzero(starts), len(starts))
    chosen, draws = [], []
    for start, end, budget in zip(offsets[:-1].tolist(), offsets[1:].tolist(), budgets.tolist()):
        if budget == 0:
            continue
        first, last = np.searchsorted(word_bounds, [start, end])
        bounds = word_bounds[first:last + 1]
        words = np.flatnonzero(maskable[bounds[:-1]])  # a word is all special (one token) or all maskable
        sizes = np.diff(bounds)[words]
        order = rng.permutation(len(words))
        picked = _fill(sizes[order], budget)
        words = np.sort(words[order[picked]])
        word_draws = rng.random(len(words))
        for word, draw in zip(words.tolist(), word_draws.tolist()):
            chosen.append(np.arange(bounds[word], bounds[word + 1]))
            draws.append(np.full(bounds[word + 1] - bounds[word], draw))
    if not chosen:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(chosen), np.concatenate(draws)


def _fill(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Indices of ``sizes`` taken in order while each fits in what is left of ``budget`` (the first alone if
    none fits)."""
    taken, left = [], budget
    for index, size in enumerate(sizes.tolist()):
        if size <= left:
            taken.append(index)
            left -= size
            if left == 0:
                break
    return np.array(taken or [0], dtype=np.int64)
