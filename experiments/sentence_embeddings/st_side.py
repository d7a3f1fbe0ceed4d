"""Reproduction (not CI): the peer side of issue 25's sentence-embedding numbers, in sentence-transformers.

    python experiments/sentence_embeddings/st_side.py --task siamese            # seeds 1 2 3, one thread
    python experiments/sentence_embeddings/st_side.py --task simcse --seeds 1   # one seed
    python experiments/sentence_embeddings/st_side.py --untrained               # the model before training
    python experiments/sentence_embeddings/st_side.py --task simcse --quick     # seconds: 64 rows (checks the script)

The same model, ids, data and recipe as ``experiment=chinese_stsb_siamese`` and
``experiment=chinese_stsb_simcse`` (``MODEL`` and ``RECIPES`` in ``common.py``, the presets' values):

* data: ``datasets/chinese_stsb/`` (Chinese STS-B; see its README), the best epoch by Spearman on
  ``dev.tsv``, scores of that epoch's model on ``test.tsv``. ``siamese`` trains on ``train.tsv``'s
  scored pairs; ``simcse`` on its ``text_a`` sentences alone (what uer's simcse reader takes from the
  file), each given as the pair (s, s);
* ids: uer's own (``uer.models.sentence.sentence_ids``, the project's BERT tokenizer over
  ``models/google_zh_vocab.txt``): ``[CLS] sentence [SEP]``, cut to ``seq_length``, padding id 0, fed
  to the model as features (``input_ids``, ``attention_mask``, ``token_type_ids`` all 0: uer's are 1
  on text from its own table; either way one segment vector is learnt), not through
  sentence-transformers' tokenizer;
* model: a ``SentenceTransformer`` of a ``Transformer`` module over a ``BertModel`` from random
  weights (normal, std 0.02; its pooler unused): hidden 128, 3 post-LN layers, 4 heads, feed-forward 512,
  GELU, 128 positions, LayerNorm eps 1e-6 (uer's), dropout 0.1 (also on the attention
  probabilities), then ``Pooling`` by the mean over the real positions ([CLS] and [SEP] included,
  as uer's ``task.pooling=mean``);
* loss: ``CosineSimilarityLoss`` on score / 5 (siamese); ``MultipleNegativesRankingLoss`` with
  scale 1 / temperature = 20 over (s, s) pairs (simcse: the two forwards draw different dropout, the
  batch's other sentences are the negatives; SimCSE's objective);
* recipe: AdamW (eps 1e-6, weight decay 0.01, not on biases and LayerNorms, the 1-D tensors as uer),
  a linear schedule with ``int(0.1 * steps)`` warm-up steps (transformers'), clipping at 1.0,
  batches in shuffled order with the last partial one dropped, the batch size, learning rate and
  epochs of ``RECIPES``; one loop over the losses (sentence-transformers' trainer would tokenize);
* scores: the cosine of a pair's two embeddings (eval mode), scored by
  ``uer.tasks.sentence_embedding.sts_correlations``, the code that scores uer's tasks.

Each seed's scores (dev of the best epoch, test of that epoch's model, training time) go to ``--out``
(default ``experiments/sentence_embeddings/results_st_TASK.json``, ``--untrained``:
``results_untrained.json``), merged with the seeds already there; the mean and sample standard
deviation are printed and stored. ``uer_side.py`` writes the same shape for uer.
"""

from __future__ import annotations

import copy
import random
import sys
import tempfile
import time

from common import BEST_METRIC, DATA, METRICS, MODEL, RECIPES, SEEDS, TASKS, read_pairs, results_path, summary
from hf_peer import VOCAB, peer_arguments, project_tokenizer, run_seeds


def encoded(rows, tokenizer, task: str, seq_length: int) -> list[tuple[list[int], list[int], float]]:
    """Training examples ``(ids, ids, target)``: a pair and its score / ``max_score`` (siamese), or a row's
    ``text_a`` twice and no target (simcse)."""
    from uer.models.sentence import sentence_ids  # lazy: uer is on the path once the tokenizer is built

    if task == "simcse":
        return [(ids, ids, float("nan")) for ids in (sentence_ids(tokenizer, a, seq_length) for a, _, _ in rows)]
    top = RECIPES[task]["max_score"]
    return [(sentence_ids(tokenizer, a, seq_length), sentence_ids(tokenizer, b, seq_length), score / top)
            for a, b, score in rows]


def features(sequences: list[list[int]]) -> dict:
    """A batch's features: ids padded with 0 on the right as uer pads them (``pad_batch``), mask 1 on the real
    positions, one segment."""
    import torch  # lazy: the script's --help needs no torch

    from uer.models.sentence import pad_batch  # lazy: uer is on the path once the tokenizer is built

    ids, mask = pad_batch(sequences)  # uer's segment ids are 1 exactly on the real positions: the mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def batches(count: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Row indices in shuffled order cut into ``batch_size`` batches, the last partial one dropped."""
    order = list(range(count))
    rng.shuffle(order)
    return [order[start:start + batch_size] for start in range(0, count - batch_size + 1, batch_size)]


def build_model(seed: int, vocab_size: int, work: str):
    """The randomly initialised ``SentenceTransformer`` of ``seed``: a ``BertModel`` of ``MODEL``'s shape saved to
    ``work`` and loaded by a ``Transformer`` module (with transformers' tokenizer files over the same vocabulary,
    which the module needs but these runs never call), then mean ``Pooling``."""
    from sentence_transformers import SentenceTransformer  # lazy: the script's --help needs none of these
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer  # lazy: as above
    from transformers import BertConfig, BertModel, BertTokenizer, set_seed  # lazy: as above
    from transformers.utils import logging  # lazy: as above

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    set_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=MODEL["hidden_size"], num_hidden_layers=MODEL["layers_num"],
        num_attention_heads=MODEL["heads_num"], intermediate_size=MODEL["feedforward_size"], hidden_act="gelu",
        hidden_dropout_prob=MODEL["dropout"], attention_probs_dropout_prob=MODEL["dropout"],
        max_position_embeddings=MODEL["max_seq_length"], type_vocab_size=2, initializer_range=0.02,
        layer_norm_eps=1e-6, pad_token_id=0)
    BertModel(config).save_pretrained(work)  # the pooler too, as the module loads one (mean pooling skips it)
    BertTokenizer(vocab_file=str(VOCAB), do_lower_case=True).save_pretrained(work)
    transformer = Transformer(work, max_seq_length=MODEL["max_seq_length"])
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def cosines(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 64) -> list[float]:
    """The cosine of each pair's two embeddings, in eval mode (no dropout), in order."""
    import torch  # lazy: the script's --help needs no torch
    from torch.nn import functional as F  # lazy: as torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            u = model(features([a for a, _ in chunk]))["sentence_embedding"]
            v = model(features([b for _, b in chunk]))["sentence_embedding"]
            out += F.cosine_similarity(u, v, dim=-1).tolist()
    return out


def scored(model, rows: list[tuple[list[int], list[int], float]]) -> dict:
    """uer's ``spearman`` and ``pearson`` of the model's cosines against the rows' gold scores."""
    from uer.tasks.sentence_embedding import sts_correlations  # lazy: uer is on the path once the tokenizer is built

    return sts_correlations(cosines(model, [(a, b) for a, b, _ in rows]), [gold for _, _, gold in rows])


def loss_of(task: str, model):
    """sentence-transformers' loss of ``task`` on ``model``."""
    from sentence_transformers.sentence_transformer.losses import (  # lazy: the script's --help needs none
        CosineSimilarityLoss, MultipleNegativesRankingLoss)

    if task == "siamese":
        return CosineSimilarityLoss(model)
    return MultipleNegativesRankingLoss(model, scale=1.0 / RECIPES[task]["temperature"])


def optimizer_of(model, recipe: dict, steps: int):
    """AdamW, weight decay on the matrices only, and transformers' linear schedule with warm-up."""
    import torch  # lazy: the script's --help needs no torch
    from transformers import get_linear_schedule_with_warmup  # lazy: as torch

    params = [param for param in model.parameters() if param.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": recipe["weight_decay"]},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=recipe["learning_rate"], betas=(0.9, 0.999), eps=recipe["eps"])
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(steps * recipe["warmup"]), steps)


def train(task: str, model, train_rows, dev_rows, recipe: dict, seed: int) -> tuple[int, list[dict], dict]:
    """Train ``recipe["epochs_num"]`` epochs, scoring dev after each; the best epoch, every epoch's dev scores,
    and the best epoch's weights (loaded back into ``model``)."""
    import torch  # lazy: the script's --help needs no torch

    loss = loss_of(task, model)
    rng = random.Random(seed)
    steps = recipe["epochs_num"] * (len(train_rows) // recipe["batch_size"])
    optimizer, schedule = optimizer_of(model, recipe, steps)
    history, best, best_state = [], None, None
    for epoch in range(1, recipe["epochs_num"] + 1):
        model.train()
        for batch in batches(len(train_rows), recipe["batch_size"], rng):
            rows = [train_rows[index] for index in batch]
            labels = torch.tensor([target for _, _, target in rows]) if task == "siamese" else None
            value = loss([features([a for a, _, _ in rows]), features([b for _, b, _ in rows])], labels)
            optimizer.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["max_grad_norm"])
            optimizer.step()
            schedule.step()
        history.append({"epoch": epoch, **scored(model, dev_rows)})
        print(f"seed {seed} epoch {epoch}: dev {history[-1]}", flush=True)
        if best is None or history[-1][BEST_METRIC] > best[BEST_METRIC]:
            best, best_state = history[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best["epoch"], history, best


def run_seed(seed: int, args, tokenizer) -> dict:
    import torch  # lazy: the script's --help needs no torch

    torch.set_num_threads(args.threads)
    limit = 64 if args.quick else None
    recipe = dict(RECIPES[args.task or "siamese"], epochs_num=1 if args.quick else args.epochs)
    dev, test = (encoded(read_pairs(DATA / f"{split}.tsv", limit), tokenizer, "siamese", recipe["seq_length"])
                 for split in ("dev", "test"))
    with tempfile.TemporaryDirectory(prefix="st_side_") as work:
        model = build_model(seed, len(tokenizer.vocab), work)
        if args.untrained:
            return {"seed": seed, "best_epoch": 0, "dev": scored(model, dev), "test": scored(model, test)}
        train_rows = encoded(read_pairs(DATA / "train.tsv", limit), tokenizer, args.task, recipe["seq_length"])
        start = time.perf_counter()
        best_epoch, history, best = train(args.task, model, train_rows, dev, recipe, seed)
        seconds = time.perf_counter() - start
        return {"seed": seed, "best_epoch": best_epoch, "train_seconds": round(seconds, 1),
                "dev": {name: best[name] for name in METRICS}, "dev_by_epoch": history, "test": scored(model, test)}


def main() -> None:
    args = peer_arguments(__doc__, SEEDS, 0, None,
                          ("--task", {"choices": TASKS, "help": "the preset to match (needed unless --untrained)"}),
                          ("--untrained", {"action": "store_true", "help": "score the random model, no training"}))
    if not args.untrained and args.task is None:
        sys.exit("st_side.py: give --task siamese or --task simcse (or --untrained)")
    import sentence_transformers  # lazy: the script's --help needs no sentence-transformers

    args.epochs = args.epochs or RECIPES[args.task or "siamese"]["epochs_num"]
    args.out = args.out or results_path("st", None if args.untrained else args.task)
    tokenizer = project_tokenizer()
    recipe = {} if args.untrained else dict(RECIPES[args.task], epochs_num=args.epochs)
    header = {"toolkit": "sentence-transformers", "sentence_transformers": sentence_transformers.__version__,
              "command": "python experiments/sentence_embeddings/st_side.py " + " ".join(sys.argv[1:]),
              "data": "datasets/chinese_stsb", "model": MODEL, "recipe": recipe, "best_metric": BEST_METRIC,
              "threads": args.threads}
    run_seeds(args, lambda seed: run_seed(seed, args, tokenizer), header, summary,
              ("seed", "best_epoch", "dev", "test"))


if __name__ == "__main__":
    main()
