"""Reproduction (not CI): the peer side of issue 25's multi-label reproduction, in transformers' ``Trainer``.

    python experiments/multilabel/hf_multilabel.py                # seeds 1 2 3, one thread each, one after another
    python experiments/multilabel/hf_multilabel.py --seeds 1      # one seed
    python experiments/multilabel/hf_multilabel.py --quick        # seconds: 64 rows, 1 epoch (checks the script only)

The same model, data and recipe as ``experiment=msra_entity_types_multilabel`` (``RECIPE`` and
``MODEL`` in ``common.py``, the preset's values):

* data: ``datasets/msra_entity_types/`` (which of PER, LOC, ORG a sentence of MSRA-NER names; see
  its README), train on ``train.tsv``, the best epoch by ``BEST_METRIC`` on ``dev.tsv``, scores of
  that epoch's model on ``test.tsv``;
* ids: the project's BERT tokenizer over ``models/google_zh_vocab.txt`` (the ids uer sees):
  ``[CLS] sentence [SEP]``, cut to ``seq_length`` ids (no sentence needs it), padding id 0;
* model: ``BertForSequenceClassification(problem_type="multi_label_classification")`` from random
  weights (normal, std 0.02): hidden 128, 3 post-LN layers, 4 heads, feed-forward 512, GELU, 128
  positions, LayerNorm eps 1e-6 (uer's), dropout 0.1 (also on the attention probabilities), the
  pooler (dense + tanh on [CLS]) then one logit per type with no dropout between (uer's head has
  none), trained by binary cross-entropy. Segment ids are all 0 here (uer's are 1 on text, 0 on
  padding, from a 3-row table; either way one segment vector is learnt);
* recipe: AdamW (eps 1e-6, weight decay 0.01, not on biases and LayerNorms), linear schedule with
  10% warm-up, gradient clipping at 1.0, batch 32 in shuffled order with the last partial batch
  dropped, the learning rate and epochs of ``RECIPE``;
* scores: a type is predicted when its sigmoid probability is at least ``RECIPE["threshold"]``,
  scored by ``uer.tasks.metrics.multilabel_metrics``, the code that scores ``task=multilabel``
  (micro-F1, macro-F1, exact set).

Each seed's scores (dev of the best epoch, test of that epoch's model, wall time) go to ``--out``
(default ``experiments/multilabel/results_hf.json``), merged with the seeds already there; at the
end the mean and sample standard deviation per metric are printed and stored.
``experiments/multilabel/uer_multilabel.py`` writes the same shape for uer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import BEST_METRIC, DATA, HERE, LABELS, METRICS, MODEL, RECIPE, SEEDS, summary
from hf_peer import (bert_classifier_config, peer_arguments, project_tokenizer, recipe_and_splits, run_seeds,
                     sequence_classifier_seed)


def read_tsv(path: Path, limit: int | None = None) -> list[tuple[list[int], str]]:
    """``(class ids, sentence)`` of each row of a ``label<TAB>text_a`` file."""
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["label", "text_a"]:
            raise SystemExit(f"{path}: header {header}, expected label, text_a")
        rows = []
        for line in f:
            label, text = line.rstrip("\n").split("\t")
            rows.append(([int(piece) for piece in label.split(",") if piece], text))
    return rows[:limit] if limit else rows


def encoded(rows, tokenizer, seq_length: int) -> list[dict]:
    """Rows as ``input_ids`` ``[CLS] sentence [SEP]`` (cut to ``seq_length``) and multi-hot ``labels``."""
    cls, sep = tokenizer.vocab.token_to_id("[CLS]"), tokenizer.vocab.token_to_id("[SEP]")
    return [{"input_ids": [cls, *tokenizer.encode(text), sep][:seq_length],
             "labels": [float(label in labels) for label in range(len(LABELS))]} for labels, text in rows]


def collate(batch: list[dict]) -> dict:
    """Pads ``input_ids`` with 0 (mask 0 there); one segment; float multi-hot ``labels``."""
    import torch  # lazy: the script's --help needs no torch

    width = max(len(item["input_ids"]) for item in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    for row, item in enumerate(batch):
        ids[row, :len(item["input_ids"])] = torch.tensor(item["input_ids"])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([item["labels"] for item in batch])}


def scored(logits, gold) -> dict:
    """uer's multi-label scores of ``logits`` against the multi-hot ``gold`` at ``RECIPE["threshold"]``."""
    import torch  # lazy: the script's --help needs no torch

    from uer.tasks.metrics import multilabel_metrics  # lazy: uer is on the path once the tokenizer is built

    predicted = torch.sigmoid(torch.as_tensor(logits).float()) >= RECIPE["threshold"]
    return multilabel_metrics(torch.as_tensor(gold).numpy(), predicted.numpy())


def run_seed(seed: int, args, tokenizer) -> dict:
    recipe, splits = recipe_and_splits(args, RECIPE, lambda split, limit: encoded(
        read_tsv(DATA / f"{split}.tsv", limit), tokenizer, RECIPE["seq_length"]))
    config = bert_classifier_config(len(tokenizer.vocab), MODEL, len(LABELS), "multi_label_classification")
    return sequence_classifier_seed(seed, args, config, recipe, splits, collate, scored, BEST_METRIC, METRICS)


def main() -> None:
    args = peer_arguments(__doc__, SEEDS, RECIPE["epochs_num"], HERE / "results_hf.json")
    import transformers  # lazy: the script's --help needs no transformers

    tokenizer = project_tokenizer()
    header = {"toolkit": "transformers", "transformers": transformers.__version__,
              "command": "python experiments/multilabel/hf_multilabel.py " + " ".join(sys.argv[1:]),
              "data": "datasets/msra_entity_types", "model": MODEL, "recipe": dict(RECIPE, epochs_num=args.epochs),
              "best_metric": BEST_METRIC, "threads": args.threads}
    run_seeds(args, lambda seed: run_seed(seed, args, tokenizer), header, summary,
              ("seed", "best_epoch", "train_seconds", "dev", "test"))


if __name__ == "__main__":
    main()
