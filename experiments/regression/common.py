"""What both sides of the Chinese STS-B regression reproduction share: the data, the model, the recipe,
the results files and the lexical baseline.

A results file (``results_hf.json``, ``results_uer.json``) holds the toolkit, the command, the model
and recipe, one entry per seed (``seed``, ``best_epoch``, ``dev`` of the best epoch and ``test`` of
that epoch's model, each ``{spearman, pearson}`` as ``uer.tasks.sentence_embedding.sts_correlations``
returns them, the scorer of ``task=regression``; ``dev_by_epoch``) and their ``summary``: mean and
sample standard deviation per split and metric.

    python experiments/regression/common.py     # the experiments/RESULTS.md tables of both files
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import load_runs, mean_std  # noqa: E402
from sts_pairs import correlation_cells, read_pairs  # noqa: E402  (read_pairs: also hf_regression.py's reader)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "datasets" / "chinese_stsb"
PRESET = "chinese_stsb_regression"
SEEDS = (1, 2, 3)
# conf/experiment/chinese_stsb_regression.yaml holds the same values (tests/unit/test_chinese_stsb_regression.py checks).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": 128}
RECIPE = {"epochs_num": 4, "batch_size": 32, "learning_rate": 1e-3, "warmup": 0.1, "weight_decay": 0.01,
          "eps": 1e-6, "max_grad_norm": 1.0, "seq_length": 128}
BEST_METRIC = "spearman"
SPLITS = ("dev", "test")
METRICS = ("spearman", "pearson")


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one run) over the seeds, per split and metric."""
    return {split: {name: mean_std([run[split][name] for run in runs]) for name in METRICS} for split in SPLITS}


def store(path: Path, header: dict, runs: dict[int, dict]) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now, with their summary (``seed_results.store``)."""
    return seed_results.store(path, header, runs, summary)


def char_overlap(text_a: str, text_b: str) -> float:
    """The Dice coefficient of the two sentences' character multisets: 2 |a ∩ b| / (|a| + |b|)."""
    shared = sum((Counter(text_a) & Counter(text_b)).values())
    return 2 * shared / (len(text_a) + len(text_b)) if text_a or text_b else 0.0


def overlap_scores(split: str) -> dict[str, float]:
    """The correlations of the character overlap of each pair of ``split`` with its gold score (no model)."""
    sys.path.insert(0, str(ROOT))
    from uer.tasks.sentence_embedding import sts_correlations  # lazy: uer is on the path only from here

    rows = read_pairs(DATA / f"{split}.tsv")
    return sts_correlations([char_overlap(a, b) for a, b, _ in rows], [score for _, _, score in rows])


def cell(path: Path, split: str) -> str:
    """``Spearman m ± s, Pearson m ± s (n=N)`` (x100), or "not run yet"."""
    if not path.is_file():
        return "not run yet"
    found = json.loads(path.read_text(encoding="utf-8"))["summary"][split]
    parts = [f"{label} {100 * found[name]['mean']:.2f} ± {100 * found[name]['std']:.2f}"
             for name, label in (("spearman", "Spearman"), ("pearson", "Pearson"))]
    return f"{', '.join(parts)} (n={found['spearman']['n']})"


def overlap_cell(split: str) -> str:
    found = overlap_scores(split)
    return f"Spearman {100 * found['spearman']:.2f}, Pearson {100 * found['pearson']:.2f}"


def rows() -> str:
    """The experiments/RESULTS.md table: one row per scored split, both toolkits and the baseline side by side."""
    hf, uer = HERE / "results_hf.json", HERE / "results_uer.json"
    lines = [f"| split | uer, `experiment={PRESET}` | transformers `BertForSequenceClassification` | "
             "character overlap (no model) |",
             "| --- | --- | --- | --- |"]
    for split, label in (("dev", "dev (best epoch)"), ("test", "test (that epoch's model)")):
        lines.append(f"| {label} | {cell(uer, split)} | {cell(hf, split)} | {overlap_cell(split)} |")
    return "\n".join(lines)


def per_seed() -> str:
    """Every seed's correlations (x100) from both results files."""
    lines = ["| toolkit | seed | best epoch | dev Spearman / Pearson | test Spearman / Pearson |",
             "| --- | --- | --- | --- | --- |"]
    for name, path in (("uer", HERE / "results_uer.json"), ("transformers", HERE / "results_hf.json")):
        for seed, run in sorted(load_runs(path).items()):
            lines.append(f"| {name} | {seed} | {correlation_cells(run)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rows())
    print()
    print(per_seed())
