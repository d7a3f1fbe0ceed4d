"""What both sides of the sentence-embedding reproduction share: the model, the two recipes, the data
and the results files.

Two tasks on datasets/chinese_stsb (Chinese STS-B, scores 0..5): ``siamese`` (trained on the train
split's scored pairs, the cosine of a pair regressed on score / 5) and ``simcse`` (unsupervised: the
train split's ``text_a`` sentences without their scores, each its own positive through dropout, the
batch's other sentences its negatives). Both are scored by the Spearman (which picks the best epoch)
and Pearson correlation of the pairs' cosines with the gold scores, on dev and test.

A results file (``results_{toolkit}_{task}.json``, toolkit ``uer`` or ``st`` for sentence-transformers;
``results_untrained.json`` for the model before any training) holds the toolkit, the command, the
model and recipe, one entry per seed (``seed``, ``best_epoch``, ``dev`` of the best epoch and
``test`` of that epoch's model, each ``{spearman, pearson}`` as
``uer.tasks.sentence_embedding.sts_correlations`` returns them; ``dev_by_epoch``) and their
``summary``: mean and sample standard deviation per split and metric.

    python experiments/sentence_embeddings/common.py     # the experiments/RESULTS.md tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import load_runs  # noqa: E402
from sts_pairs import correlation_cells, read_pairs  # noqa: E402  (read_pairs: the peer's reader, st_side.py's)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "datasets" / "chinese_stsb"
SEEDS = (1, 2, 3)
TASKS = ("siamese", "simcse")
PRESETS = {task: f"chinese_stsb_{task}" for task in TASKS}
# conf/experiment/chinese_stsb_{siamese,simcse}.yaml hold the same values (tests/unit/test_chinese_stsb_embeddings.py
# checks).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": 128}
COMMON = {"learning_rate": 5e-4, "warmup": 0.1, "weight_decay": 0.01, "eps": 1e-6, "max_grad_norm": 1.0,
          "seq_length": 128, "pooling": "mean"}
RECIPES = {"siamese": {**COMMON, "epochs_num": 2, "batch_size": 32, "max_score": 5.0},
           "simcse": {**COMMON, "epochs_num": 1, "batch_size": 64, "temperature": 0.05}}
BEST_METRIC = "spearman"
SPLITS = ("dev", "test")
METRICS = ("spearman", "pearson")
TOOLKITS = {"uer": "uer", "st": "sentence-transformers"}


def results_path(toolkit: str, task: str | None) -> Path:
    """``results_{toolkit}_{task}.json``; ``task`` None: the untrained model's ``results_untrained.json``."""
    return HERE / ("results_untrained.json" if task is None else f"results_{toolkit}_{task}.json")


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over the seeds of each split's ``METRICS`` (a results file's summary)."""
    return seed_results.split_summary(runs, SPLITS, METRICS)


def cell(path: Path, split: str) -> str:
    """``Spearman m ± s, Pearson m ± s (n=N)`` in percent, or "not run yet"."""
    if not path.is_file():
        return "not run yet"
    found = json.loads(path.read_text(encoding="utf-8"))["summary"][split]
    return (f"Spearman {100 * found['spearman']['mean']:.2f} ± {100 * found['spearman']['std']:.2f}, "
            f"Pearson {100 * found['pearson']['mean']:.2f} ± {100 * found['pearson']['std']:.2f} "
            f"(n={found['spearman']['n']})")


def rows(task: str) -> str:
    """The experiments/RESULTS.md table of ``task``: one row per scored split, both toolkits and the untrained
    model side by side."""
    lines = [f"| split | uer, `experiment={PRESETS[task]}` | sentence-transformers | untrained model |",
             "| --- | --- | --- | --- |"]
    for split, label in (("dev", "dev (best epoch)"), ("test", "test (that epoch's model)")):
        lines.append(f"| {label} | {cell(results_path('uer', task), split)} | {cell(results_path('st', task), split)} "
                     f"| {cell(results_path('st', None), split)} |")
    return "\n".join(lines)


def per_seed() -> str:
    """Every seed's scores (percent) from every results file."""
    lines = ["| task | toolkit | seed | best epoch | dev Spearman / Pearson | test Spearman / Pearson |",
             "| --- | --- | --- | --- | --- | --- |"]
    files = [(task, TOOLKITS[toolkit], results_path(toolkit, task)) for task in TASKS for toolkit in TOOLKITS]
    for task, name, path in [*files, ("none", "untrained", results_path("st", None))]:
        for seed, run in sorted(load_runs(path).items()):
            lines.append(f"| {task} | {name} | {seed} | {correlation_cells(run)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for task in TASKS:
        print(f"{task}:")
        print(rows(task))
        print()
    print(per_seed())
