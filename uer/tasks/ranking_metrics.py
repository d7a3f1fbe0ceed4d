"""Ranking scores for question answering over candidate sentences: MRR and MAP.

Each question has candidates with a model score and a gold relevance (0/1).  The
candidates are ranked by score, highest first.  A relevant candidate whose score ties
with irrelevant ones is ranked *after* them, so a model that gives every candidate the
same score gains nothing from the file order (ties among candidates of the same
relevance do not change either metric).

* reciprocal rank = 1 / (rank of the first relevant candidate);
* average precision = the mean, over the relevant candidates, of the precision of the
  ranking cut just after each of them: ``(1/R) * sum_k [k-th is relevant] * hits@k / k``
  with ``R`` relevant candidates.

MRR and MAP are their means over the questions.  A question without any relevant
candidate has neither (there is nothing to find), so it is skipped, as in the usual
evaluation of WikiQA/NLPCC-DBQA; ``ranking_metrics`` reports how many were scored and
how many skipped.
"""

from __future__ import annotations

from typing import Hashable, Sequence


def ranked_relevance(scores: Sequence[float], relevant: Sequence[int]) -> list[bool]:
    """Relevance of the candidates in ranked order (score descending, relevant last among ties)."""
    if len(scores) != len(relevant):
        raise ValueError(f"{len(scores)} scores but {len(relevant)} relevance labels")
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), bool(relevant[i])))
    return [bool(relevant[i]) for i in order]


def reciprocal_rank(scores: Sequence[float], relevant: Sequence[int]) -> float | None:
    """1 / rank of the best-ranked relevant candidate; None when no candidate is relevant."""
    for rank, hit in enumerate(ranked_relevance(scores, relevant), start=1):
        if hit:
            return 1.0 / rank
    return None


def average_precision(scores: Sequence[float], relevant: Sequence[int]) -> float | None:
    """Mean precision at the rank of each relevant candidate; None when no candidate is relevant."""
    hits, total = 0, 0.0
    for rank, hit in enumerate(ranked_relevance(scores, relevant), start=1):
        if hit:
            hits += 1
            total += hits / rank
    return total / hits if hits else None


def group_by_question(qids: Sequence[Hashable], scores: Sequence[float],
                      relevant: Sequence[int]) -> dict[Hashable, tuple[list[float], list[int]]]:
    """``qid -> (scores, relevance)`` in order of first appearance; a question's rows need not be adjacent."""
    if not len(qids) == len(scores) == len(relevant):
        raise ValueError(f"{len(qids)} question ids, {len(scores)} scores, {len(relevant)} relevance labels")
    groups: dict[Hashable, tuple[list[float], list[int]]] = {}
    for qid, score, rel in zip(qids, scores, relevant):
        question_scores, question_relevant = groups.setdefault(qid, ([], []))
        question_scores.append(float(score))
        question_relevant.append(int(rel))
    return groups


def ranking_metrics(qids: Sequence[Hashable], scores: Sequence[float], relevant: Sequence[int]) -> dict:
    """``{"mrr", "map", "questions", "skipped"}`` over the questions with a relevant candidate.

    With no such question, MRR and MAP are 0.0 (and ``questions`` is 0).
    """
    rrs, aps, skipped = [], [], 0
    for question_scores, question_relevant in group_by_question(qids, scores, relevant).values():
        rr = reciprocal_rank(question_scores, question_relevant)
        if rr is None:
            skipped += 1
            continue
        rrs.append(rr)
        aps.append(average_precision(question_scores, question_relevant))
    return {
        "mrr": sum(rrs) / len(rrs) if rrs else 0.0,
        "map": sum(aps) / len(aps) if aps else 0.0,
        "questions": len(rrs),
        "skipped": skipped,
    }
