"""Turning clean text into (noised source, original target) pairs for text-to-text pre-training.

Two schemes, each a frozen dataclass stored in the dataset's meta.json (``noising``) so that
dynamic noising at batch time draws from the same distribution as static noising at preprocess
time (the same shape as :mod:`uer.data.masking`):

* :class:`SpanCorruption` (``target=t5``, Raffel et al. 2020): ``round(n * noise_density)`` of
  the ``n`` tokens (at least 1, at most ``n - 1``) form about ``noise / mean_span_length``
  spans at random places; each span is replaced in the source by a sentinel token (the first
  span by the first sentinel, ...), and the target lists each sentinel followed by the span it
  replaced.  Every token is in exactly one of source and target.  The number of tokens is
  exact per instance, the span lengths a uniformly random composition of it, so both the
  density and the mean span length hold on average.  Spans never touch (at least one kept
  token between two), so every sentinel stands for one span.
* :class:`TextInfilling` (``target=bart``, Lewis et al. 2020): with ``permute_sentences`` the
  sentences (separated by ``[SEP]``) are shuffled first; then ``round(n * mask_ratio)`` tokens
  in spans of Poisson(``poisson_lambda``) lengths, at least 1 each (BART's zero-length spans,
  which insert a ``[MASK]``, are left out so the source is never longer than the text), are
  each replaced by one ``[MASK]``.  The target is the original text, in its original order.

A pair is stored as one instance ``[CLS] source [SEP] [CLS] target [SEP]`` whose first segment
is ``[CLS] source [SEP]``; the batch reads the decoder's input as the target part without its
last token and the labels as it without its first (:mod:`uer.data.pretrain_dataset`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from uer.data.instances import InstanceBlock, InstanceOptions, pair_block
from uer.errors import UerError


def _gaps(rng: np.random.Generator, total: int, spans: int, inner: int) -> np.ndarray:
    """``spans + 1`` counts summing to ``total``: before the first span, between spans (each at least
    ``inner``), after the last; uniformly random among such compositions."""
    free = total - inner * (spans - 1) if spans else total
    bars = np.sort(rng.choice(free + spans, size=spans, replace=False))
    gaps = np.diff(np.concatenate(([-1], bars, [free + spans]))) - 1
    gaps[1:-1] += inner
    return gaps


def _composition(rng: np.random.Generator, total: int, parts: int) -> np.ndarray:
    """``parts`` counts of at least 1 summing to ``total``, uniformly random."""
    cuts = np.sort(rng.choice(total - 1, size=parts - 1, replace=False)) + 1
    return np.diff(np.concatenate(([0], cuts, [total])))


def _spans(body: np.ndarray, gaps: np.ndarray, lengths: np.ndarray):
    """``(kept runs, spans)``: ``body`` cut into gap, span, gap, span, ..., gap."""
    bounds = np.cumsum(np.ravel(np.column_stack((gaps[:-1], lengths))))
    pieces = np.split(body, bounds)
    return pieces[0::2], pieces[1::2]


@dataclass(frozen=True)
class SpanCorruption:
    """T5's span corruption; ``sentinel_ids[k]`` replaces the k-th span of an instance."""

    noise_density: float
    mean_span_length: float
    sentinel_ids: tuple[int, ...]

    @staticmethod
    def spans_for(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
        """``(noise tokens, spans)`` for a text of ``length`` tokens."""
        if length < 2:
            return 0, 0
        noise = min(max(int(round(length * noise_density)), 1), length - 1)
        spans = max(1, int(round(noise / mean_span_length)))
        return noise, min(spans, noise, length - noise + 1)

    def apply(self, body: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(source, target)`` of one text (ids, no [CLS]/[SEP] around it)."""
        noise, spans = self.spans_for(len(body), self.noise_density, self.mean_span_length)
        if spans == 0:
            return body, body[:0]
        if spans > len(self.sentinel_ids):
            raise ValueError(f"{spans} spans but {len(self.sentinel_ids)} sentinels: sentinel_ids() decides how many")
        lengths = _composition(rng, noise, spans)
        kept, noised = _spans(body, _gaps(rng, len(body) - noise, spans, inner=1), lengths)
        sentinels = np.asarray(self.sentinel_ids[:spans], dtype=body.dtype)
        source = [part for k in range(spans) for part in (kept[k], sentinels[k:k + 1])] + [kept[-1]]
        target = [part for k in range(spans) for part in (sentinels[k:k + 1], noised[k])]
        return np.concatenate(source), np.concatenate(target)

    def to_dict(self) -> dict:
        return {"scheme": "t5", **asdict(self), "sentinel_ids": list(self.sentinel_ids)}


@dataclass(frozen=True)
class TextInfilling:
    """BART's text infilling after an optional sentence permutation."""

    mask_ratio: float
    poisson_lambda: float
    permute_sentences: bool
    mask_id: int
    sep_id: int

    def apply(self, body: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(source, target)``: the noised text and the original one."""
        shuffled = body
        if self.permute_sentences:
            parts = np.split(body, np.flatnonzero(body == self.sep_id))
            sentences = [parts[0], *(part[1:] for part in parts[1:])]  # without the [SEP]s between them
            sep = np.array([self.sep_id], dtype=body.dtype)
            order = rng.permutation(len(sentences)).tolist()
            shuffled = np.concatenate([piece for k, i in enumerate(order) for piece in ([sep] if k else []) +
                                       [sentences[i]]])
        masked = min(int(round(len(body) * self.mask_ratio)), max(len(body) - 1, 0))
        if masked == 0:
            return shuffled, body
        lengths = np.maximum(rng.poisson(self.poisson_lambda, size=masked), 1)
        spans = int(np.searchsorted(np.cumsum(lengths), masked)) + 1
        lengths = lengths[:spans]
        lengths[-1] -= int(lengths.sum()) - masked
        kept, _ = _spans(shuffled, _gaps(rng, len(body) - masked, spans, inner=0), lengths)
        mask = np.array([self.mask_id], dtype=body.dtype)
        source = [part for k in range(spans) for part in (kept[k], mask)] + [kept[-1]]
        return np.concatenate(source), body

    def to_dict(self) -> dict:
        return {"scheme": "bart", **asdict(self)}


NOISING_OPTIONS = {"t5": ("noise_density", "mean_span_length"),
                   "bart": ("mask_ratio", "poisson_lambda", "permute_sentences")}


def preprocess_options(meta: dict) -> dict:
    """The keyword arguments of :func:`uer.data.build.build_pretrain_dataset` that rebuild a dataset's
    text-to-text settings (``t5_noise_density=...``, ``tgt_seq_length=...``) from its meta.json."""
    noising = meta.get("noising")
    if noising:
        scheme = noising["scheme"]
        return {f"{scheme}_{name}": noising[name] for name in NOISING_OPTIONS[scheme]}
    return {"tgt_seq_length": meta["tgt_seq_length"]} if "tgt_seq_length" in meta else {}


def noising_from_dict(data: dict):
    """The scheme a dataset's meta.json describes."""
    fields = {key: value for key, value in data.items() if key != "scheme"}
    if data["scheme"] == "t5":
        return SpanCorruption(**{**fields, "sentinel_ids": tuple(fields["sentinel_ids"])})
    return TextInfilling(**fields)


def noise_block(block: InstanceBlock, rng: np.random.Generator, scheme, options: InstanceOptions) -> InstanceBlock:
    """Every ``[CLS] text`` instance of ``block`` as a :func:`~uer.data.instances.pair_block` pair, drawn in
    order from ``rng`` (static noising at preprocess time)."""
    bodies = [instance[1:] for instance in np.split(block.tokens, block.offsets[1:-1])] if len(block.lengths) else []
    pairs = [scheme.apply(body, rng) for body in bodies]
    return pair_block([a for a, _ in pairs], [b for _, b in pairs], options, block.tokens.dtype)


SENTINEL_PATTERNS = ("<extra_id_{}>", "[unused{}]")  # T5's own vocabularies, then BERT's reserved tokens


def sentinel_ids(vocab, needed: int, seq_length: int) -> tuple[int, ...]:
    """The ids of ``needed`` sentinel tokens of ``vocab``: ``<extra_id_0>``, ``<extra_id_1>`` ... where it has
    them, else ``[unused1]``, ``[unused2]`` ...; a UerError naming the vocabulary and the fix when it has too few."""
    found: list[int] = []
    for pattern in SENTINEL_PATTERNS:
        first = 0 if pattern.startswith("<") else 1
        found = []
        while len(found) < needed and pattern.format(first + len(found)) in vocab:
            found.append(vocab.ids[pattern.format(first + len(found))])
        if found:
            break
    if len(found) < needed:
        tokens = f"{pattern.format(first)} to {pattern.format(first + needed - 1)}"
        raise UerError(f"vocabulary {vocab.path} has {len(found)} sentinel tokens ([unused1], [unused2] ... or "
                       f"<extra_id_0> ...) but target=t5 with preprocess.seq_length={seq_length} needs {needed}; add "
                       f"{tokens} to the vocabulary, or lower preprocess.seq_length or raise "
                       "preprocess.t5_mean_span_length")
    return tuple(found)
