"""Generation (uer/models/generation.py): greedy decoding and beam search choose exactly the tokens transformers'
generate() chooses on random BART and T5 models, sampling is seeded, finished rows leave the batch, bad settings
are refused with one line naming the key."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from generation_testing import HFSeq2Seq, hf_generate, ragged_batch, tiny_bart, tiny_t5
from tool_testing import one_thread  # noqa: F401  (a fixture)
from uer.errors import UerError
from uer.models.generation import GenerationConfig, filter_logits, generate, generate_rows

VOCAB = 40
LENGTHS = [5, 9, 3, 7, 4, 8, 6]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: a second thread only waits

MODELS = {"bart": (tiny_bart, 2), "t5": (tiny_t5, 1)}  # builder, end token

CASES = {
    "greedy": {},
    "greedy_no_repeat_min_new": {"no_repeat_ngram_size": 2, "min_new_tokens": 2},
    "beam4_short_penalty_no_repeat_early": {"num_beams": 4, "length_penalty": 0.6, "no_repeat_ngram_size": 2,
                                            "early_stopping": "true"},
    "beam4_short_penalty_no_repeat_not_early": {"num_beams": 4, "length_penalty": 0.6, "no_repeat_ngram_size": 2,
                                                "early_stopping": "false"},
    "beam4_long_penalty_early": {"num_beams": 4, "length_penalty": 1.5, "early_stopping": "true"},
    "beam4_long_penalty_not_early": {"num_beams": 4, "length_penalty": 1.5, "early_stopping": "false"},
    "beam4_long_penalty_never": {"num_beams": 4, "length_penalty": 1.5, "early_stopping": "never"},
    "beam3_negative_penalty_min_new": {"num_beams": 3, "length_penalty": -0.5, "min_new_tokens": 3},
}


@pytest.fixture(scope="module")
def models():
    return {name: (build(vocab=VOCAB), eos) for name, (build, eos) in MODELS.items()}


@pytest.fixture(scope="module")
def batch():
    return ragged_batch(LENGTHS, VOCAB)


class Counting(HFSeq2Seq):
    """The adapter, recording the source lengths of each batch and how many rows each step feeds."""

    def __init__(self, model):
        super().__init__(model)
        self.rows: list[int] = []
        self.batches: list[list[int]] = []

    def start_generation(self, src, seg):
        self.batches.append(src.ne(0).sum(dim=1).tolist())
        return super().start_generation(src, seg)

    def step(self, tokens, state):
        self.rows.append(tokens.numel())
        return super().step(tokens, state)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", MODELS)
def test_greedy_and_beam_search_choose_transformers_tokens(models, batch, name, case):
    model, eos = models[name]
    config = GenerationConfig(max_new_tokens=12, **CASES[case])
    ours = generate(HFSeq2Seq(model), *batch, config, eos_id=eos)
    assert ours == hf_generate(model, batch[0], config, eos)
    assert len(ours) == len(LENGTHS) and all(len(ids) <= 12 and eos not in ids for ids in ours)


@pytest.mark.parametrize("beams", [5, 9])
@pytest.mark.parametrize("name", MODELS)
def test_beams_over_half_the_vocabulary_choose_transformers_tokens(name, beams):
    """Each step keeps 2 * num_beams continuations: with a vocabulary of 9, more than one beam offers them."""
    build, eos = MODELS[name]
    model = build(vocab=9)
    batch = ragged_batch(LENGTHS, 9)
    config = GenerationConfig(max_new_tokens=6, num_beams=beams, length_penalty=0.6)
    assert generate(HFSeq2Seq(model), *batch, config, eos_id=eos) == hf_generate(model, batch[0], config, eos)


def test_the_cases_end_rows_at_varied_steps(models, batch):
    """The comparisons above mean something: rows end early and late, on both models."""
    for model, eos in models.values():
        greedy = generate(HFSeq2Seq(model), *batch, GenerationConfig(max_new_tokens=12), eos_id=eos)
        beam = generate(HFSeq2Seq(model), *batch, GenerationConfig(max_new_tokens=12, **CASES[
            "beam4_short_penalty_no_repeat_early"]), eos_id=eos)
        for rows in (greedy, beam):
            assert len({len(ids) for ids in rows}) > 1, rows


def test_finished_rows_leave_the_batch(models, batch):
    model, eos = models["bart"]
    counting = Counting(model)
    out = generate(counting, *batch, GenerationConfig(max_new_tokens=12), eos_id=eos)
    # each row is fed until it produced its end token (or its 12th token), no further
    assert sum(counting.rows) == sum(min(len(ids) + 1, 12) for ids in out)
    assert counting.rows == sorted(counting.rows, reverse=True) and counting.rows[-1] < len(LENGTHS)
    counting.rows.clear()
    generate(counting, *batch, GenerationConfig(max_new_tokens=12, num_beams=4), eos_id=eos)
    assert all(rows % 4 == 0 for rows in counting.rows) and counting.rows[0] == 4 * len(LENGTHS)
    assert counting.rows == sorted(counting.rows, reverse=True) and counting.rows[-1] < 4 * len(LENGTHS)


def test_generation_stops_where_the_decoder_positions_end(models, batch):
    model, eos = models["t5"]
    short = HFSeq2Seq(model)
    short.max_target_positions = 5
    for extra in ({}, {"num_beams": 4}):
        ours = generate(short, *batch, GenerationConfig(max_new_tokens=12, **extra), eos_id=eos)
        assert ours == generate(HFSeq2Seq(model), *batch, GenerationConfig(max_new_tokens=5, **extra), eos_id=eos)
        assert max(len(ids) for ids in ours) == 5


@pytest.mark.parametrize("beams", [1, 4])
def test_rows_are_batched_by_length_and_answered_in_input_order(models, batch, beams):
    model, eos = models["t5"]
    config = GenerationConfig(max_new_tokens=12, num_beams=beams)
    counting = Counting(model)
    sources = [row[row.ne(0)].tolist() for row in batch[0]]
    answers = generate_rows(counting, sources, [[1] * len(row) for row in sources], config, eos_id=eos,
                            batch_size=3, device=torch.device("cpu"))
    alone = [generate(HFSeq2Seq(model), torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long), config,
                      eos_id=eos)[0] for row in sources]
    assert answers == alone
    assert counting.batches == [[3, 4, 5], [6, 7, 8], [9]]  # LENGTHS sorted, 3 a batch
    assert generate_rows(counting, [], [], config, eos_id=eos, batch_size=3, device=torch.device("cpu")) == []
    assert generate(counting, batch[0][:0], batch[1][:0], config, eos_id=eos) == []


def test_sampling_is_seeded_and_top_k_1_is_greedy(models, batch):
    model, eos = models["t5"]

    def run(**settings):
        return generate(HFSeq2Seq(model), *batch, GenerationConfig(max_new_tokens=12, **settings), eos_id=eos)

    sampled = run(do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=1)
    assert sampled == run(do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=1)
    assert sampled != run(do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=2)
    greedy = run()
    assert sampled != greedy
    assert run(do_sample=True, top_k=1, seed=3) == greedy == run(do_sample=True, top_p=1e-6, seed=4)


def test_filter_logits_keeps_top_k_and_the_top_p_mass_per_row():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0], [-1.0, 0.0, 1.0, 2.0, 3.0]])
    kept = filter_logits(logits, 1.0, 2, 1.0).isfinite()
    assert kept.tolist() == [[True, True, False, False, False], [False, False, False, True, True]]
    probs = torch.softmax(logits[0], dim=0)  # 0.64, 0.24, ...: top_p=0.8 keeps the first two
    assert probs[0] < 0.8 < probs[0] + probs[1]
    assert filter_logits(logits, 1.0, 0, 0.8).isfinite().sum(dim=1).tolist() == [2, 2]
    torch.testing.assert_close(filter_logits(logits, 2.0, 0, 1.0), logits / 2)


@pytest.mark.parametrize("settings, words", [
    ({"num_beams": 41}, "num_beams=41 is larger than the vocabulary (40 tokens)"),
    ({"num_beams": 0}, "num_beams=0 must be at least 1"),
    ({"max_new_tokens": 0}, "max_new_tokens=0 must be at least 1"),
    ({"top_p": 0.0, "do_sample": True}, "top_p=0.0 must be in (0, 1]"),
    ({"top_p": 1.5, "do_sample": True}, "top_p=1.5 must be in (0, 1]"),
    ({"temperature": 0.0, "do_sample": True}, "temperature=0.0 must be a positive finite number"),
    ({"top_k": -1}, "top_k=-1 must be at least 0"),
    ({"length_penalty": float("nan"), "num_beams": 2}, "length_penalty=nan must be a finite number"),
    ({"early_stopping": "sometimes", "num_beams": 2}, "early_stopping=sometimes must be one of: true, false, never"),
    ({"min_new_tokens": 13}, "min_new_tokens=13 exceeds max_new_tokens=12"),
    ({"num_beams": 4, "do_sample": True}, "num_beams=4 with do_sample=true"),
])
def test_bad_settings_are_refused_with_one_line_naming_the_key(models, batch, settings, words):
    model, eos = models["bart"]
    config = GenerationConfig(**{"max_new_tokens": 12, **settings})
    with pytest.raises(UerError) as caught:
        generate(HFSeq2Seq(model), *batch, config, eos_id=eos)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    if "vocabulary" not in words:  # checkable before any model: a caller's check names its own keys
        with pytest.raises(UerError, match=f"^tool.{next(iter(settings))}="):
            config.check("tool.")


def test_every_setting_is_declared_with_help():
    for field in dataclasses.fields(GenerationConfig):
        assert field.metadata["help"], field.name
    assert GenerationConfig(early_stopping=True).stopping == "true"  # a Hydra override `true` arrives as a bool
