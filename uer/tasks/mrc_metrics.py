"""Span-extraction reading comprehension scores, as the CMRC 2018 evaluation computes them.

Both scores compare characters after :func:`normalize`: lowercase, then drop whitespace
and punctuation (the Chinese and English marks of the CMRC 2018 script, plus anything
Unicode calls punctuation and all non-alphanumeric ASCII).  Every remaining character is
one unit, so Chinese and English text are scored the same way.

* EM: 1 if the normalised prediction equals some normalised gold answer, else 0.
* F1: for each gold answer, with ``lcs`` the length of the longest common *substring*
  (contiguous) of prediction and answer, ``P = lcs / len(prediction)``,
  ``R = lcs / len(answer)``, ``F1 = 2PR / (P + R)`` (0 when ``lcs`` is 0); the best
  gold answer counts.

:func:`mrc_scores` averages over questions and reports fractions in ``[0, 1]`` (the
CMRC 2018 script prints them times 100), like the other tasks' accuracies.  As in that
script, a pair that normalises to two empty strings has EM 1 but F1 0.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

# The marks the CMRC 2018 script removes; the ASCII ones and most others are also
# Unicode punctuation, listed anyway so the script's set is visibly covered.
CMRC_PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》…·、「」（）－～『』")


def _is_punctuation(char: str) -> bool:
    if char in CMRC_PUNCTUATION:
        return True
    if char.isascii():
        return not char.isalnum()
    return unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """Lowercase; drop whitespace and punctuation."""
    return "".join(char for char in text.lower() if not char.isspace() and not _is_punctuation(char))


def longest_common_substring(a: str, b: str) -> int:
    """Length of the longest contiguous run of characters that ``a`` and ``b`` share."""
    if not a or not b:
        return 0
    best = 0
    previous = [0] * (len(b) + 1)
    for char_a in a:
        current = [0] * (len(b) + 1)
        for j, char_b in enumerate(b, start=1):
            if char_a == char_b:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best = current[j]
        previous = current
    return best


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    prediction = normalize(prediction)
    best = 0.0
    for answer in answers:
        answer = normalize(answer)
        lcs = longest_common_substring(prediction, answer)
        if lcs:
            precision, recall = lcs / len(prediction), lcs / len(answer)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    prediction = normalize(prediction)
    return float(any(prediction == normalize(answer) for answer in answers))


def mrc_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"f1", "em"}`` averaged over questions; ``answers[i]`` are the gold texts of question ``i``."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} questions")
    if not predictions:
        return {"f1": 0.0, "em": 0.0}
    f1 = sum(f1_score(p, a) for p, a in zip(predictions, answers))
    em = sum(exact_match(p, a) for p, a in zip(predictions, answers))
    return {"f1": f1 / len(predictions), "em": em / len(predictions)}
