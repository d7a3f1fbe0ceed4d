"""What the transformers sides of the reproductions (``experiments/*/hf_*.py``) share: the project's
tokenizer, the Trainer's arguments for uer's recipe, training that keeps the best dev epoch, one seed of
a ``BertForSequenceClassification`` side (its config, training and test scores), and the loop over seeds
that fills a results file (``seed_results``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import seed_results

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "models" / "google_zh_vocab.txt"


def project_tokenizer():
    """uer's BERT tokenizer over ``models/google_zh_vocab.txt``: the ids uer's runs see."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from uer.tokenizers.bert import BertTokenizer  # lazy: uer is on the path only from here
    from uer.tokenizers.vocab import Vocab  # lazy: as BertTokenizer

    return BertTokenizer(Vocab.from_file(VOCAB), do_lower_case=True)


def without_hf_datasets(*modules) -> None:
    """The repository's ``datasets/`` folder, on the path from its root, imports as a namespace package
    named ``datasets``, which the Trainer takes for Hugging Face's library (not installed here)."""
    for module in modules:
        module.is_datasets_available = lambda: False


def training_arguments(cls, work: str, seed: int, recipe: dict, dev_rows: int, best_metric: str, **extra):
    """``cls`` (``TrainingArguments`` or a subclass) for uer's recipe: AdamW (not on biases and LayerNorms), linear
    schedule with ``recipe["warmup"]`` warm-up, clipping, shuffled batches with the last partial one dropped,
    a dev evaluation each epoch and the best epoch by ``best_metric`` kept, on the CPU."""
    # dataloader_drop_last (uer's epochs drop the last partial batch) holds for dev too: a batch size that
    # divides the dev rows keeps every one of them
    eval_batch = max(size for size in range(1, 65) if dev_rows % size == 0)
    return cls(
        output_dir=work, seed=seed, data_seed=seed, num_train_epochs=recipe["epochs_num"],
        per_device_train_batch_size=recipe["batch_size"], per_device_eval_batch_size=eval_batch,
        learning_rate=recipe["learning_rate"], lr_scheduler_type="linear", warmup_steps=recipe["warmup"],
        weight_decay=recipe["weight_decay"], adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=recipe["eps"],
        optim="adamw_torch", max_grad_norm=recipe["max_grad_norm"], eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model=best_metric, greater_is_better=True, logging_strategy="epoch", report_to=[],
        use_cpu=True, dataloader_num_workers=0, dataloader_drop_last=True, disable_tqdm=True, save_only_model=True,
        **extra)


def train_keeping_best(trainer, best_metric: str) -> tuple[float, dict, list[dict]]:
    """Train; the seconds it took, the dev log entry of the best epoch (the model ``load_best_model_at_end``
    kept) and every epoch's dev log entry."""
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = [entry for entry in trainer.state.log_history if f"eval_{best_metric}" in entry]
    return seconds, max(history, key=lambda entry: entry[f"eval_{best_metric}"]), history


def bert_classifier_config(vocab_size: int, model: dict, num_labels: int, problem_type: str):
    """The ``BertConfig`` of uer's small BERT ``model`` (a reproduction's ``MODEL``) with a sequence head of
    ``num_labels`` outputs: GELU, LayerNorm eps 1e-6 (uer's), 2 token types, normal(0.02) initialisation,
    dropout also on the attention probabilities, none between the pooler and the output (uer's head has none)."""
    from transformers import BertConfig  # lazy: the scripts' --help needs no transformers

    return BertConfig(
        vocab_size=vocab_size, hidden_size=model["hidden_size"], num_hidden_layers=model["layers_num"],
        num_attention_heads=model["heads_num"], intermediate_size=model["feedforward_size"], hidden_act="gelu",
        hidden_dropout_prob=model["dropout"], attention_probs_dropout_prob=model["dropout"],
        max_position_embeddings=model["max_seq_length"], type_vocab_size=2, initializer_range=0.02,
        layer_norm_eps=1e-6, pad_token_id=0, classifier_dropout=0.0, num_labels=num_labels, problem_type=problem_type)


def rows_output(model, data: list[dict], collate: Callable[[list[dict]], dict], batch_size: int = 50):
    """The model's logits of every row of ``data`` (no row dropped), in order."""
    import torch  # lazy: the scripts' --help needs no torch

    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = collate(data[start:start + batch_size])
            batch.pop("labels")
            out.append(model(**batch).logits)
    return torch.cat(out)


def recipe_and_splits(args, recipe: dict, load: Callable[[str, int | None], list]) -> tuple[dict, tuple]:
    """The recipe of this run (``args.epochs``; 1 epoch with ``args.quick``) and the encoded train, dev and test
    rows, ``load(split, limit)`` of each (the first 64 rows with ``args.quick``, else all)."""
    limit = 64 if args.quick else None
    return (dict(recipe, epochs_num=1 if args.quick else args.epochs),
            tuple(load(split, limit) for split in ("train", "dev", "test")))


def sequence_classifier_seed(seed: int, args, config, recipe: dict, splits: tuple[list, list, list],
                             collate: Callable[[list[dict]], dict], scored: Callable, best_metric: str,
                             metrics: tuple[str, ...]) -> dict:
    """``BertForSequenceClassification(config)`` from random weights (``seed``), trained by the Trainer on uer's
    ``recipe`` over the encoded ``(train, dev, test)`` rows (``collate`` batches them) with ``args.threads``
    threads; the best dev epoch by ``best_metric`` kept and ``scored(logits, gold labels)`` on test. The seed's
    entry: best epoch, training seconds, parameter count, dev of the best epoch, dev by epoch, test."""
    import torch  # lazy: the scripts' --help needs no torch
    import transformers.trainer  # lazy: as torch
    from transformers import BertForSequenceClassification, Trainer, TrainingArguments, set_seed  # lazy: as torch

    without_hf_datasets(transformers.trainer)
    torch.set_num_threads(args.threads)
    train, dev, test = splits
    set_seed(seed)
    model = BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory(prefix="hf_peer_") as work:
        trainer = Trainer(model=model, args=training_arguments(TrainingArguments, work, seed, recipe, len(dev),
                                                               best_metric),
                          train_dataset=train, eval_dataset=dev, data_collator=collate,
                          compute_metrics=lambda prediction: scored(prediction.predictions, prediction.label_ids))
        seconds, best, history = train_keeping_best(trainer, best_metric)
        return {"seed": seed, "best_epoch": round(best["epoch"]), "train_seconds": round(seconds, 1),
                "parameters": model.num_parameters(),
                "dev": {name: best[f"eval_{name}"] for name in metrics},
                "dev_by_epoch": [{"epoch": round(entry["epoch"]), **{name: entry[f"eval_{name}"] for name in metrics}}
                                 for entry in history],
                "test": scored(rows_output(trainer.model.eval(), test, collate), [item["labels"] for item in test])}


def peer_arguments(description: str, seeds, epochs: int | None, out: Path | None, *extra: tuple[str, dict]):
    """The command line of a transformers side: ``--seeds``, ``--epochs``, ``--threads`` (OMP_NUM_THREADS set
    from it before torch starts its threads), ``--out`` (the results file), ``--quick``, and ``extra``
    (flag, ``add_argument`` keywords). An ``epochs`` or ``out`` of None leaves the default to the caller."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=out)
    for flag, options in extra:
        parser.add_argument(flag, **options)
    parser.add_argument("--quick", action="store_true", help="64 rows of each split, 1 epoch: checks the script")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    return args


def run_seeds(args, run_one: Callable[[int], dict], header: dict, summary: Callable[[list[dict]], dict],
              shown: tuple[str, ...]) -> None:
    """``run_one(seed)`` for each of ``args.seeds``, printing the ``shown`` keys of each; unless ``args.quick``,
    each merged into ``args.out`` with the runs it holds of the same recipe (``header["recipe"]``,
    ``seed_results.store``); the summary printed at the end."""
    runs = {} if args.quick else seed_results.load_runs(seed_results.check_results_file(args.out), header["recipe"])
    for seed in args.seeds:
        run = run_one(seed)
        print(json.dumps({key: run[key] for key in shown}, ensure_ascii=False), flush=True)
        runs[seed] = run
        if not args.quick:
            runs = seed_results.store(args.out, header, runs, summary)
    print(json.dumps(summary([runs[seed] for seed in sorted(runs)]), indent=1))