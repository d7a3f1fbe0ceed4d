"""What both sides of the multi-label reproduction share: the model, the recipe, and the results files.

A results file (``results_hf.json``, ``results_uer.json``) holds the toolkit, the command, the model
and recipe, one entry per seed (``seed``, ``best_epoch``, ``dev`` of the best epoch and ``test`` of
that epoch's model, each ``{micro_f1, macro_f1, acc}`` as ``uer.tasks.metrics.multilabel_metrics``
returns them; ``dev_by_epoch``) and their ``summary``: mean and sample standard deviation per split
and metric.

    python experiments/multilabel/common.py     # the experiments/RESULTS.md tables of both files
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import load_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "datasets" / "msra_entity_types"
PRESET = "msra_entity_types_multilabel"
SEEDS = (1, 2, 3)
LABELS = ("PER", "LOC", "ORG")  # class ids 0, 1, 2 (experiments/multilabel/make_msra_entity_types.py)
# conf/experiment/msra_entity_types_multilabel.yaml holds the same values (tests/unit/test_msra_entity_types.py checks).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": 128}
RECIPE = {"epochs_num": 4, "batch_size": 32, "learning_rate": 5e-4, "warmup": 0.1, "weight_decay": 0.01,
          "eps": 1e-6, "max_grad_norm": 1.0, "seq_length": 128, "threshold": 0.5}
BEST_METRIC = "micro_f1"
SPLITS = ("dev", "test")
METRICS = ("micro_f1", "macro_f1", "acc")


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one run) over the seeds, per split and metric."""
    return seed_results.split_summary(runs, SPLITS, METRICS)


def store(path: Path, header: dict, runs: dict[int, dict]) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now, with their summary (``seed_results.store``)."""
    return seed_results.store(path, header, runs, summary)


def cell(path: Path, split: str) -> str:
    """``micro-F1 m ± s, macro-F1 m ± s, exact m ± s (n=N)`` in percent, or "not run yet"."""
    if not path.is_file():
        return "not run yet"
    found = json.loads(path.read_text(encoding="utf-8"))["summary"][split]
    parts = [f"{label} {100 * found[name]['mean']:.2f} ± {100 * found[name]['std']:.2f}"
             for name, label in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("acc", "exact set"))]
    return f"{', '.join(parts)} (n={found['micro_f1']['n']})"


def always_empty(split: str) -> str:
    """The scores of predicting no type for every sentence of ``split``: what learning must beat."""
    sys.path.insert(0, str(ROOT))
    from uer.tasks.metrics import multilabel_metrics  # lazy: uer is on the path only from here

    with (DATA / f"{split}.tsv").open(encoding="utf-8") as f:
        gold = [[str(label) in line.split("\t")[0].split(",") for label in range(len(LABELS))] for line in list(f)[1:]]
    found = multilabel_metrics(gold, [[False] * len(LABELS)] * len(gold))
    return f"micro-F1 {100 * found['micro_f1']:.2f}, macro-F1 {100 * found['macro_f1']:.2f}, " \
           f"exact set {100 * found['acc']:.2f}"


def rows() -> str:
    """The experiments/RESULTS.md table: one row per scored split, both toolkits side by side."""
    hf, uer = HERE / "results_hf.json", HERE / "results_uer.json"
    lines = [f"| split | uer, `experiment={PRESET}` | transformers `BertForSequenceClassification` | always empty |",
             "| --- | --- | --- | --- |"]
    for split, label in (("dev", "dev (best epoch)"), ("test", "test (that epoch's model)")):
        lines.append(f"| {label} | {cell(uer, split)} | {cell(hf, split)} | {always_empty(split)} |")
    return "\n".join(lines)


def per_seed() -> str:
    """Every seed's scores (percent) from both results files."""
    lines = ["| toolkit | seed | best epoch | dev micro / macro-F1 | test micro / macro-F1 | test exact set |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, path in (("uer", HERE / "results_uer.json"), ("transformers", HERE / "results_hf.json")):
        for seed, run in sorted(load_runs(path).items()):
            dev, test = run["dev"], run["test"]
            lines.append(f"| {name} | {seed} | {run['best_epoch']} | {100 * dev['micro_f1']:.2f} / "
                         f"{100 * dev['macro_f1']:.2f} | {100 * test['micro_f1']:.2f} / {100 * test['macro_f1']:.2f} | "
                         f"{100 * test['acc']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rows())
    print()
    print(per_seed())
