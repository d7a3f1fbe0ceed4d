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

MRR and MAP are their means over *all* questions: a question without any relevant
candidate scores 0 on both, as in ERNIE's ``evaluate_mrr``/``evaluate_map`` (the code
behind the published NLPCC-DBQA numbers of ERNIE and BERT) and in TREC's MRR.  That code
breaks ties by the file order, which only matters for exactly equal scores.
"""

from __future__ import annotations

from typing import Hashable, Sequence


def ranked_relevance(scores: Sequence[float], relevant: Sequence[int]) -> list[bool]:
    """Relevance of the candidates in ranked order (score descending, relevant last among ties)."""
    if len(scores) != len(relevant):
        raise ValueError(f"{len(scores)} scores but {len(relevant)} relevance labels")
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), bool(relevant[i])))
    return [bool(relevant[i]) for i in order]


def reciprocal_rank(scores: Sequence[float], relevant: Sequence[int]) -> float:
    """1 / rank of the best-ranked relevant candidate; 0 when no candidate is relevant."""
    for rank, hit in enumerate(ranked_relevance(scores, relevant), start=1):
        if hit:
            return 1.0 / rank
    return 0.0


def average_precision(scores: Sequence[float], relevant: Sequence[int]) -> float:
    """Mean precision at the rank of each relevant candidate; 0 when no candidate is relevant."""
    hits, total = 0, 0.0
    for rank, hit in enumerate(ranked_relevance(scores, relevant), start=1):
        if hit:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


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
    """``{"mrr", "map", "questions", "unanswerable"}``: means over all questions, and how many
    questions there are and how many of them have no relevant candidate (scoring 0)."""
    groups = group_by_question(qids, scores, relevant).values()
    rrs = [reciprocal_rank(question_scores, question_relevant) for question_scores, question_relevant in groups]
    aps = [average_precision(question_scores, question_relevant) for question_scores, question_relevant in groups]
    return {
        "mrr": sum(rrs) / len(rrs) if rrs else 0.0,
        "map": sum(aps) / len(aps) if aps else 0.0,
        "questions": len(rrs),
        "unanswerable": sum(not any(question_relevant) for _, question_relevant in groups),
    }
