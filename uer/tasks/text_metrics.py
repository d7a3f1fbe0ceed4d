"""Scores for generated text against one reference per example: BLEU, ROUGE and exact match.

BLEU is sacrebleu's corpus BLEU (0-100, as the field reports it) with its own tokenizers;
ROUGE-1/2/L are rouge-score's F1 averaged over examples (0-1); exact match is the share
of generations equal to their reference after stripping surrounding whitespace (0-1).

``tokenize`` says what a token is, for both libraries at once:

* ``13a``: sacrebleu's default (WMT's mteval-v13a) and rouge-score's own tokenizer
  (lower-cased runs of ``[a-z0-9]``), for English and other space-separated text;
* ``zh``: sacrebleu's Chinese tokenizer (each CJK character a token, the rest as 13a);
  ROUGE over characters, since rouge-score's tokenizer would drop every Chinese
  character and score Chinese text as empty (the character-level ROUGE of LCSTS/CSL);
* ``char``: every non-space character a token for both.
"""

from __future__ import annotations

from typing import Sequence

from uer.errors import UerError

TOKENIZATIONS = ("13a", "zh", "char")
TEXT_METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "exact_match")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class CharacterTokenizer:
    """Every non-whitespace character is a token (rouge-score takes any object with this ``tokenize``)."""

    def tokenize(self, text: str) -> list[str]:
        return [ch for ch in text if not ch.isspace()]


def text_scores(generated: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> dict[str, float]:
    """``{bleu, rouge1, rouge2, rougeL, exact_match}`` of ``generated[i]`` against ``references[i]``."""
    if tokenize not in TOKENIZATIONS:
        raise UerError(f"tokenize={tokenize!r} is not one of {', '.join(TOKENIZATIONS)}")
    if len(generated) != len(references):
        raise UerError(f"{len(generated)} generations for {len(references)} references")
    if not references:
        return {name: 0.0 for name in TEXT_METRICS}
    import sacrebleu  # lazy: with rouge-score (nltk, scipy) most of a second of every main.py start-up
    from rouge_score import rouge_scorer  # lazy: as above

    bleu = sacrebleu.corpus_bleu(list(generated), [list(references)], tokenize=tokenize).score
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=None if tokenize == "13a" else CharacterTokenizer())
    rouge = {name: 0.0 for name in ROUGE_TYPES}
    for hypothesis, reference in zip(generated, references):
        for name, score in scorer.score(reference, hypothesis).items():
            rouge[name] += score.fmeasure
    exact = sum(h.strip() == r.strip() for h, r in zip(generated, references))
    n = len(references)
    return {"bleu": float(bleu), **{name: total / n for name, total in rouge.items()}, "exact_match": exact / n}
