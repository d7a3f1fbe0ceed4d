"""CMRC 2018 span scores: the official EM and F1, and the original toolkit's per-character F1.

``em`` and ``f1`` follow the organisers' evaluation script ``cmrc2018_evaluate.py`` (v5):

* EM is 1 when the prediction equals some gold answer after each is lowercased, stripped
  of whitespace at both ends and cleared of the characters in :data:`PUNCTUATION`.
  Nothing else is removed: a space inside (``port royal`` vs ``portroyal``) or a mark the
  list lacks (``(``, ``.``, ``…``, ``"``) makes them differ.
* F1 compares *segments* (:func:`segments`): lowercase, strip, drop the characters in
  :data:`PUNCTUATION`, then every Chinese character (U+4E00..U+9FA5) is one segment and
  every run of other characters is cut into words as ``nltk.word_tokenize`` cuts it
  (:func:`uer.tasks.latin_words.latin_words`), so ``1963年`` is ``1963`` ``年``.  With
  ``lcs`` the length of the longest common *contiguous* run of segments,
  ``P = lcs / len(prediction)``, ``R = lcs / len(answer)``, ``F1 = 2PR / (P + R)``
  (0 when ``lcs`` is 0); the best gold answer counts.  ``1963`` vs ``1963年``: 2/3.

``f1_char`` is the F1 of the original UER-py ``run_cmrc.py``, reported so its numbers can
be compared: its copy of the script makes every character not in :data:`PUNCTUATION` one
segment, and (it lowercases and strips a copy it then does not use) it neither lowercases
nor strips, so case and spaces count.  ``1963`` vs ``1963年``: 8/9.  Its EM is the official
one.

:func:`mrc_scores` averages over questions and reports fractions in ``[0, 1]`` (the script
prints them times 100).  An empty prediction has F1 0; it has EM 1 only against an answer
that is empty once cleaned.
"""

from __future__ import annotations

from typing import Callable, Sequence

from uer.tasks.latin_words import latin_words

# The script's list.  It also holds "……", two characters that never equal the one
# character it is compared with, so "…" is kept.
PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")


def is_chinese(char: str) -> bool:
    """The script's test for a character that is a segment of its own."""
    return "\u4e00" <= char <= "\u9fa5"


def clean(text: str) -> str:
    """Lowercase, strip the ends, delete the characters in :data:`PUNCTUATION` (what EM compares)."""
    return "".join(char for char in text.lower().strip() if char not in PUNCTUATION)


def segments(text: str) -> list[str]:
    """The official F1's units: each Chinese character, and the words of the runs between them."""
    out: list[str] = []
    run: list[str] = []
    for char in clean(text):
        if is_chinese(char):
            if run:
                out.extend(latin_words("".join(run)))
                run.clear()
            out.append(char)
        else:
            run.append(char)
    if run:
        out.extend(latin_words("".join(run)))
    return out


def char_segments(text: str) -> list[str]:
    """The original toolkit's F1 units: every character not in :data:`PUNCTUATION`, case and spaces kept."""
    return [char for char in text if char not in PUNCTUATION]


def longest_common_run(a: Sequence, b: Sequence) -> int:
    """Length of the longest contiguous run of items that ``a`` and ``b`` share."""
    best = 0
    previous = [0] * (len(b) + 1)
    for item_a in a:
        current = [0] * (len(b) + 1)
        for j, item_b in enumerate(b, start=1):
            if item_a == item_b:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def f1_score(prediction: str, answers: Sequence[str],
             segment: Callable[[str], list[str]] = segments) -> float:
    """The best F1 of ``prediction`` over ``answers``, both cut into units by ``segment``."""
    predicted = segment(prediction)
    best = 0.0
    for answer in answers:
        gold = segment(answer)
        lcs = longest_common_run(predicted, gold)
        if lcs:
            precision, recall = lcs / len(predicted), lcs / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    prediction = clean(prediction)
    return float(any(prediction == clean(answer) for answer in answers))


def mrc_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"f1", "em", "f1_char"}`` averaged over questions; ``answers[i]`` are the gold texts of question ``i``."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} questions")
    totals = {"f1": 0.0, "em": 0.0, "f1_char": 0.0}
    for prediction, gold in zip(predictions, answers):
        totals["f1"] += f1_score(prediction, gold)
        totals["em"] += exact_match(prediction, gold)
        totals["f1_char"] += f1_score(prediction, gold, char_segments)
    return {name: total / len(predictions) if predictions else 0.0 for name, total in totals.items()}
