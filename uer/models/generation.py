"""Generating a target for each source row: greedy, beam search and sampling, batched, over a key/value cache.

The search knows no model; a model offers this protocol:

    state = model.start_generation(src, seg)  # src, seg (B, L) LongTensors, pad id 0: encodes once
    logits = model.step(tokens, state)        # tokens (N,): the last token of each live row -> logits (N, V)
    model.reorder(state, index)               # index (N',): keep, reorder or repeat the rows of every cache
    model.decoder_start_id                    # the first decoder input
    model.max_target_positions                # the decoder's positions (None: unlimited)

Every live row is at the same step, so a step feeds one token per row.  A row that ends
(its end token, or every beam of an input settled) is dropped from the caches at once, so
finished rows cost nothing.  Greedy decoding and beam search choose exactly the tokens
transformers' ``generate()`` chooses (``tests/unit/test_generation.py`` compares both on
random BART and T5 models):

* scores are float32; beam search adds each row's log-softmax to its running sum and keeps,
  per input, the best ``2 * num_beams`` continuations over all its beams; those ending in
  the end token (or reaching ``max_new_tokens``) among the best ``num_beams`` become
  finished hypotheses scored ``sum / length ** length_penalty`` (the length counts the
  generated tokens with the end token), the best ``num_beams`` finished ones are kept, and
  the best ``num_beams`` unfinished continuations run on;
* an input is settled once no running beam can beat its worst kept hypothesis (the best
  running sum divided by the current length ** length_penalty, or by
  ``max_new_tokens ** length_penalty`` with ``early_stopping=never`` and a positive
  penalty), or with ``early_stopping=true`` once ``num_beams`` hypotheses are kept;
* ``no_repeat_ngram_size`` and ``min_new_tokens`` set banned tokens' scores to -inf; the
  n-grams include the decoder's start token.

The answer per input is the best hypothesis's tokens after the start token, without the
end token.  :func:`generate_rows` takes rows of any lengths, batches them by length and
answers in input order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from uer.config.fields import FINITE, NON_NEGATIVE, POSITIVE, Bounds, at_least, check_bound, setting
from uer.errors import UerError

EARLY_STOPPING = ("true", "false", "never")
EMPTY = -1.0e9  # the score of an empty hypothesis slot, and what keeps a continuation out of a selection


@dataclass
class GenerationConfig:
    """How targets are generated (:func:`generate`)."""

    max_new_tokens: int = setting(64, "tokens generated at most per input (fewer if the decoder's positions end)",
                                  bounds=at_least(1))
    min_new_tokens: int = setting(0, "the end token is banned until this many tokens were generated",
                                  bounds=NON_NEGATIVE)
    num_beams: int = setting(1, "1: greedy decoding (or sampling); more: beam search keeping this many "
                                "hypotheses per input", bounds=at_least(1))
    length_penalty: float = setting(1.0, "beam search scores a finished hypothesis sum(log p) / "
                                         "length ** length_penalty: above 0 favours longer ones", bounds=FINITE)
    early_stopping: str = setting("false", "when beam search settles an input: true = once num_beams hypotheses "
                                           "finished; false = once no running beam can beat the worst finished one "
                                           "at the current length; never = the same at max_new_tokens (with a "
                                           "positive length_penalty)")
    no_repeat_ngram_size: int = setting(0, "no n-gram of this many tokens occurs twice in a generation; 0 = off",
                                        bounds=NON_NEGATIVE)
    do_sample: bool = setting(False, "draw each next token from the model's distribution instead of taking the "
                                     "most likely (num_beams=1)")
    temperature: float = setting(1.0, "sampling: divides the logits", bounds=POSITIVE)
    top_k: int = setting(0, "sampling among the k most likely tokens; 0 = all", bounds=NON_NEGATIVE)
    top_p: float = setting(1.0, "sampling among the most likely tokens whose probabilities reach p",
                           bounds=Bounds(low=0, high=1, low_open=True))
    seed: int = setting(0, "seeds the sampling, so a run is reproducible", bounds=NON_NEGATIVE)

    @property
    def stopping(self) -> str:
        """``early_stopping`` as one of EARLY_STOPPING (a Hydra override ``true`` arrives as ``True``)."""
        return str(self.early_stopping).lower()

    def check(self, prefix: str = "", vocab_size: Optional[int] = None) -> None:
        """A UerError naming the key (``prefix`` + field) of the first value the search cannot use."""
        for f in dataclasses.fields(self):
            check_bound(type(self), f, getattr(self, f.name), prefix)
        if self.stopping not in EARLY_STOPPING:
            raise UerError(f"{prefix}early_stopping={self.early_stopping} must be one of: {', '.join(EARLY_STOPPING)}")
        if self.min_new_tokens > self.max_new_tokens:
            raise UerError(f"{prefix}min_new_tokens={self.min_new_tokens} exceeds {prefix}max_new_tokens="
                           f"{self.max_new_tokens}; lower it")
        if self.do_sample and self.num_beams > 1:
            raise UerError(f"{prefix}num_beams={self.num_beams} with {prefix}do_sample=true: sampling draws one "
                           f"sequence per input; set {prefix}num_beams=1 or {prefix}do_sample=false")
        if vocab_size is not None and self.num_beams > vocab_size:
            raise UerError(f"{prefix}num_beams={self.num_beams} is larger than the vocabulary ({vocab_size} tokens); "
                           f"choose at most {vocab_size}")


def generation_config(values) -> GenerationConfig:
    """``values`` (a GenerationConfig, a config node or what a checkpoint stored) as a GenerationConfig; keys it
    does not know are dropped, missing ones take their defaults."""
    if isinstance(values, GenerationConfig):
        return values
    names = {f.name for f in dataclasses.fields(GenerationConfig)}
    return GenerationConfig(**{key: value for key, value in dict(values.items()).items() if key in names})


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """``logits`` (N, V) / temperature, -inf outside each row's ``top_k`` most likely tokens (0: no limit) and
    outside the smallest set of most likely tokens whose probabilities reach ``top_p`` (1: no limit)."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # the mass before a token already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return logits


def sample(logits: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One token id per row of ``logits`` (N, V), drawn from its softmax."""
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)


def generate(model, src: torch.Tensor, seg: torch.Tensor, config: GenerationConfig, *, eos_id: int) -> list[list[int]]:
    """Per row of ``src``, the generated ids (without the start token, ending before ``eos_id``)."""
    config.check()
    if src.size(0) == 0:
        return []
    limit = config.max_new_tokens
    if model.max_target_positions is not None:  # the token fed at step s takes position s
        limit = min(limit, model.max_target_positions)
    with torch.no_grad():
        state = model.start_generation(src, seg)
        search = _beam_search if config.num_beams > 1 else _one_per_row
        return search(model, state, config, limit, eos_id, src.size(0), src.device)


def generate_rows(model, sources: list[list[int]], segments: list[list[int]], config: GenerationConfig, *,
                  eos_id: int, batch_size: int, device: torch.device) -> list[list[int]]:
    """:func:`generate` for each source row (ids and segment ids), in input order; the rows are batched by length
    (length buckets), so a batch pads little and its rows tend to end together."""
    order = sorted(range(len(sources)), key=lambda row: len(sources[row]))
    generated: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(sources[row]) for row in rows)
        src = torch.zeros(len(rows), width, dtype=torch.long)
        seg = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            src[i, :len(sources[row])] = torch.tensor(sources[row], dtype=torch.long)
            seg[i, :len(segments[row])] = torch.tensor(segments[row], dtype=torch.long)
        for row, ids in zip(rows, generate(model, src.to(device), seg.to(device), config, eos_id=eos_id)):
            generated[row] = ids
    return generated


def _banned(scores: torch.Tensor, history: torch.Tensor, step: int, config: GenerationConfig,
            eos_id: int) -> torch.Tensor:
    """``scores`` (N, V) with -inf for the end token before ``min_new_tokens`` and for each token that would
    repeat an n-gram of its row's ``history`` (N, 1 + step)."""
    if step < config.min_new_tokens:
        scores = scores.index_fill(1, torch.tensor([eos_id], device=scores.device), float("-inf"))
    n = config.no_repeat_ngram_size
    if n and history.size(1) >= n:
        grams = history.unfold(1, n, 1)  # (N, windows, n)
        last = history[:, history.size(1) - n + 1:]  # the n - 1 tokens the next one continues
        rows, windows = (grams[:, :, :-1] == last[:, None, :]).all(dim=-1).nonzero(as_tuple=True)
        scores = scores.index_put((rows, grams[rows, windows, -1]), scores.new_tensor(float("-inf")))
    return scores


def _one_per_row(model, state, config: GenerationConfig, limit: int, eos_id: int, batch: int,
                 device: torch.device) -> list[list[int]]:
    """Greedy decoding, or sampling with ``config.do_sample``."""
    generator = torch.Generator(device=device).manual_seed(config.seed) if config.do_sample else None
    history = torch.full((batch, 1), model.decoder_start_id, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # the input of each live row
    generated: list[list[int]] = [[] for _ in range(batch)]
    for step in range(limit):
        scores = _banned(model.step(history[:, -1], state).float(), history, step, config, eos_id)
        if config.do_sample:
            tokens = sample(filter_logits(scores, config.temperature, config.top_k, config.top_p), generator)
        else:
            tokens = scores.argmax(dim=-1)
        history = torch.cat([history, tokens[:, None]], dim=1)
        ended = tokens == eos_id if step < limit - 1 else torch.ones_like(tokens, dtype=torch.bool)
        if not bool(ended.any()):
            continue
        for row, ids in zip(rows[ended].tolist(), history[ended, 1:].tolist()):
            generated[row] = ids[:-1] if ids[-1] == eos_id else ids
        live = (~ended).nonzero().squeeze(1)
        if live.numel() == 0:
            break
        model.reorder(state, live)
        history, rows = history[live], rows[live]
    return generated


def _beam_search(model, state, config: GenerationConfig, limit: int, eos_id: int, batch: int,
                 device: torch.device) -> list[list[int]]:
    """Beam search over all inputs at once: ``num_beams`` rows per unsettled input."""
    k, penalty = config.num_beams, config.length_penalty
    model.reorder(state, torch.arange(batch, device=device).repeat_interleave(k))
    history = torch.full((batch * k, 1), model.decoder_start_id, dtype=torch.long, device=device)
    inputs = torch.arange(batch, device=device)  # the input of each live group of k rows
    running = torch.zeros(batch, k, device=device)
    running[:, 1:] = EMPTY  # the beams start alike: the first step continues only the first
    kept = _Hypotheses(batch, k, limit + 1, eos_id, device)  # the best k finished ones per input
    first_k = torch.arange(2 * k, device=device) < k
    for step in range(limit):
        log_probs = torch.log_softmax(model.step(history[:, -1], state).float(), dim=-1)
        vocab = log_probs.size(-1)
        if step == 0:
            config.check(vocab_size=vocab)
        log_probs = _banned(log_probs, history, step, config, eos_id)
        n, width = inputs.numel(), min(2 * k, vocab)
        # The best 2k continuations of an input are among the best 2k of each of its beams (a beam's running sum
        # adds the same to all of its row): choosing from k * 2k candidates instead of k * V spares a pass that
        # writes k * V sums per input.
        best, best_tokens = log_probs.topk(width, dim=1)  # (n * k, width)
        totals = (best.view(n, k, width) + running[:, :, None]).view(n, k * width)
        scores, flat = totals.topk(2 * k, dim=1)
        parents = flat // width + torch.arange(n, device=device)[:, None] * k  # rows of history
        tokens = best_tokens.view(n, k * width).gather(1, flat)
        candidates = torch.cat([history[parents], tokens[:, :, None]], dim=2)  # (n, 2k, step + 2)
        ends = candidates[:, :, -1] == eos_id if step < limit - 1 else torch.ones_like(scores, dtype=torch.bool)

        finishing = ends & first_k
        if bool(finishing.any()):  # else only empty slots could change, and an answer never comes from one
            normalised = scores / ((step + 1) ** penalty)
            padded = torch.nn.functional.pad(candidates, (0, limit - step - 1), value=eos_id)
            kept.add(inputs, torch.where(finishing, normalised, normalised + EMPTY), padded, step + 1, finishing)

        scores = torch.where(ends, scores + EMPTY, scores)
        chosen = scores.topk(k, dim=1).indices
        running = scores.gather(1, chosen)
        rows = parents.gather(1, chosen)
        history = candidates.gather(1, chosen[:, :, None].expand(-1, -1, step + 2)).view(n * k, step + 2)
        if step == limit - 1:
            break
        length = limit if config.stopping == "never" and penalty > 0 else step + 1
        filled = kept.filled[inputs]
        worst = torch.where(filled, kept.scores[inputs].min(dim=1, keepdim=True).values, EMPTY)
        unsettled = (running[:, :1] / (length ** penalty) > worst).any(dim=1)
        if config.stopping == "true":
            unsettled &= ~filled.all(dim=1)
        live = unsettled.nonzero().squeeze(1)
        if live.numel() == 0:
            break
        if live.numel() < n:
            inputs, running, rows = inputs[live], running[live], rows[live]
            history = history.view(n, k, -1)[live].view(live.numel() * k, -1)
        model.reorder(state, rows.flatten())
    return kept.best()


class _Hypotheses:
    """Per input, the ``k`` best finished hypotheses: score, tokens (start token first), generated length and
    whether the slot holds one (an empty slot scores EMPTY)."""

    def __init__(self, batch: int, k: int, width: int, eos_id: int, device: torch.device):
        self.k, self.eos_id = k, eos_id
        self.scores = torch.full((batch, k), EMPTY, device=device)
        self.tokens = torch.full((batch, k, width), eos_id, dtype=torch.long, device=device)
        self.lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
        self.filled = torch.zeros(batch, k, dtype=torch.bool, device=device)

    def add(self, inputs: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor, length: int,
            finished: torch.Tensor) -> None:
        """Keep, for each of ``inputs``, the best ``k`` of its kept hypotheses and the candidates (the ones not
        ``finished`` carry scores below EMPTY, so they fill no slot)."""
        merged = torch.cat([self.scores[inputs], scores], dim=1)
        best = merged.topk(self.k, dim=1).indices
        self.scores[inputs] = merged.gather(1, best)
        rows = torch.arange(inputs.numel(), device=inputs.device)[:, None]
        self.tokens[inputs] = torch.cat([self.tokens[inputs], tokens], dim=1)[rows, best]
        lengths = torch.full_like(finished, length, dtype=torch.long)
        self.lengths[inputs] = torch.cat([self.lengths[inputs], lengths], dim=1).gather(1, best)
        self.filled[inputs] = torch.cat([self.filled[inputs], finished], dim=1).gather(1, best)

    def best(self) -> list[list[int]]:
        """Each input's best hypothesis: the ids after the start token, without the end token."""
        generated = []
        for tokens, length in zip(self.tokens[:, 0].tolist(), self.lengths[:, 0].tolist()):
            ids = tokens[1:1 + length]
            generated.append(ids[:-1] if ids and ids[-1] == self.eos_id else ids)
        return generated
