"""BLEU, ROUGE and exact match of generated text, against values worked out by hand."""

import pytest

from uer.errors import UerError
from uer.tasks.text_metrics import text_scores

# One substitution in the last of five tokens: n-gram precisions 4/5, 3/4, 2/3, 1/2, same length (no brevity
# penalty), so BLEU = 100 * (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = 100 * 0.2 ** 0.25.
FIFTH_ROOT_BLEU = 100 * 0.2 ** 0.25


def test_bleu_of_one_substitution_is_the_geometric_mean_of_the_ngram_precisions():
    assert text_scores(["a b c d e"], ["a b c d f"])["bleu"] == pytest.approx(FIFTH_ROOT_BLEU, abs=1e-4)


def test_chinese_bleu_counts_characters_with_zh_and_whole_strings_with_13a():
    assert text_scores(["甲乙丙丁戊"], ["甲乙丙丁己"], tokenize="zh")["bleu"] == pytest.approx(FIFTH_ROOT_BLEU, abs=1e-4)
    assert text_scores(["甲乙丙丁戊"], ["甲乙丙丁己"], tokenize="13a")["bleu"] == 0.0


def test_character_rouge_of_chinese_by_hand():
    # 我爱北京 vs 我爱上海: 2 of 4 characters shared (R1 F = 1/2), 1 of 3 bigrams (R2 F = 1/3), LCS 我爱 (RL F = 1/2).
    scores = text_scores(["我爱北京"], ["我爱上海"], tokenize="zh")
    assert (scores["rouge1"], scores["rouge2"], scores["rougeL"]) == pytest.approx((1 / 2, 1 / 3, 1 / 2))
    # rouge-score's own tokenizer keeps [a-z0-9] only: Chinese would score as empty text.
    assert text_scores(["我爱北京"], ["我爱上海"], tokenize="13a")["rouge1"] == 0.0


def test_rouge_is_averaged_over_examples():
    scores = text_scores(["a b", "x y"], ["a b", "a b"])
    assert scores["rouge1"] == pytest.approx(0.5)


def test_exact_match_ignores_surrounding_whitespace_only():
    assert text_scores(["a b", " c "], ["a b", "c"])["exact_match"] == 1.0
    assert text_scores(["a b", "c"], ["a  b", "d"])["exact_match"] == 0.0
    assert text_scores(["a", "b"], ["a", "c"])["exact_match"] == 0.5


def test_bad_arguments_are_refused():
    with pytest.raises(UerError, match="tokenize='spaces' is not one of 13a, zh, char"):
        text_scores(["a"], ["a"], tokenize="spaces")
    with pytest.raises(UerError, match="2 generations for 1 references"):
        text_scores(["a", "b"], ["a"])
