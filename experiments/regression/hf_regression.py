"""Reproduction (not CI): the peer side of issue 25's regression reproduction, in transformers' ``Trainer``.

    python experiments/regression/hf_regression.py                # seeds 1 2 3, one thread each, one after another
    python experiments/regression/hf_regression.py --seeds 1      # one seed
    python experiments/regression/hf_regression.py --quick        # seconds: 64 rows, 1 epoch (checks the script only)

The same model, data and recipe as ``experiment=chinese_stsb_regression`` (``RECIPE`` and ``MODEL``
in ``common.py``, the preset's values), as transformers' ``run_glue`` fine-tunes STS-B:

* data: ``datasets/chinese_stsb/`` (Chinese STS-B pairs scored 0..5; see its README), train on
  ``train.tsv``, the best epoch by ``BEST_METRIC`` (Spearman) on ``dev.tsv``, scores of that
  epoch's model on ``test.tsv``;
* ids: the project's BERT tokenizer over ``models/google_zh_vocab.txt`` (the ids uer sees):
  ``[CLS] a [SEP] b [SEP]`` cut to ``seq_length`` ids as uer cuts it (the end goes), padding id 0;
  segment 0 on ``[CLS] a [SEP]``, 1 on ``b [SEP]`` (uer's are 1 and 2, 0 on padding, from a
  3-row table: the same two learnt segment vectors);
* model: ``BertForSequenceClassification(num_labels=1, problem_type="regression")`` from random
  weights (normal, std 0.02): hidden 128, 3 post-LN layers, 4 heads, feed-forward 512, GELU, 128
  positions, LayerNorm eps 1e-6 (uer's), dropout 0.1 (also on the attention probabilities), the
  pooler (dense + tanh on [CLS]) then one output with no dropout between (uer's head has none),
  trained by mean squared error on the raw scores;
* recipe: AdamW (eps 1e-6, weight decay 0.01, not on biases and LayerNorms), linear schedule with
  10% warm-up, gradient clipping at 1.0, batch 32 in shuffled order with the last partial batch
  dropped, the learning rate and epochs of ``RECIPE``;
* scores: ``uer.tasks.sentence_embedding.sts_correlations``, the code that scores
  ``task=regression`` (Spearman and Pearson, scipy).

Each seed's scores (dev of the best epoch, test of that epoch's model, wall time, the parameter
count) go to ``--out`` (default ``experiments/regression/results_hf.json``), merged with the seeds
already there; at the end the mean and sample standard deviation per metric are printed and stored.
``experiments/regression/uer_regression.py`` writes the same shape for uer.
"""

from __future__ import annotations

import sys

from common import BEST_METRIC, DATA, HERE, METRICS, MODEL, RECIPE, SEEDS, read_pairs, summary
from hf_peer import (bert_classifier_config, peer_arguments, project_tokenizer, recipe_and_splits, run_seeds,
                     sequence_classifier_seed)


def encoded(rows, tokenizer, seq_length: int) -> list[dict]:
    """Pairs as ``input_ids`` ``[CLS] a [SEP] b [SEP]`` and ``token_type_ids`` 0 on a, 1 on b, both cut to
    ``seq_length`` from the end (as uer's ``task=regression`` cuts), and the float ``labels``."""
    cls, sep = tokenizer.vocab.token_to_id("[CLS]"), tokenizer.vocab.token_to_id("[SEP]")
    out = []
    for text_a, text_b, score in rows:
        first, second = [cls, *tokenizer.encode(text_a), sep], [*tokenizer.encode(text_b), sep]
        out.append({"input_ids": (first + second)[:seq_length],
                    "token_type_ids": ([0] * len(first) + [1] * len(second))[:seq_length], "labels": score})
    return out


def collate(batch: list[dict]) -> dict:
    """Pads ``input_ids`` and ``token_type_ids`` with 0 (mask 0 there); float ``labels``."""
    import torch  # lazy: the script's --help needs no torch

    width = max(len(item["input_ids"]) for item in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    segments = torch.zeros_like(ids)
    for row, item in enumerate(batch):
        ids[row, :len(item["input_ids"])] = torch.tensor(item["input_ids"])
        segments[row, :len(item["token_type_ids"])] = torch.tensor(item["token_type_ids"])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": segments,
            "labels": torch.tensor([float(item["labels"]) for item in batch])}


def scored(predictions, gold) -> dict:
    """uer's regression scores (Spearman, Pearson) of the model's outputs against the gold scores."""
    import numpy  # lazy: the script's --help needs no numpy

    from uer.tasks.sentence_embedding import sts_correlations  # lazy: uer is on the path once the tokenizer is built

    return sts_correlations(numpy.asarray(predictions, dtype=float).reshape(-1).tolist(),
                            numpy.asarray(gold, dtype=float).reshape(-1).tolist())


def run_seed(seed: int, args, tokenizer) -> dict:
    recipe, splits = recipe_and_splits(args, RECIPE, lambda split, limit: encoded(
        read_pairs(DATA / f"{split}.tsv", limit), tokenizer, RECIPE["seq_length"]))
    config = bert_classifier_config(len(tokenizer.vocab), MODEL, 1, "regression")
    return sequence_classifier_seed(seed, args, config, recipe, splits, collate, scored, BEST_METRIC, METRICS)


def main() -> None:
    args = peer_arguments(__doc__, SEEDS, RECIPE["epochs_num"], HERE / "results_hf.json")
    import transformers  # lazy: the script's --help needs no transformers

    tokenizer = project_tokenizer()
    header = {"toolkit": "transformers", "transformers": transformers.__version__,
              "command": "python experiments/regression/hf_regression.py " + " ".join(sys.argv[1:]),
              "data": "datasets/chinese_stsb", "model": MODEL, "recipe": dict(RECIPE, epochs_num=args.epochs),
              "best_metric": BEST_METRIC, "threads": args.threads}
    run_seeds(args, lambda seed: run_seed(seed, args, tokenizer), header, summary,
              ("seed", "best_epoch", "train_seconds", "parameters", "dev", "test"))


if __name__ == "__main__":
    main()
