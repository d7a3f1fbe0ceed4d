"""What both sides of the text-to-text reproduction share: the model, the recipe, and the results file.

A results file (``results_hf.json``, ``results_uer.json``) holds the toolkit, the command, the model
and recipe, one entry per seed (``seed``, ``best_epoch``, ``train_seconds``, ``dev`` of the best epoch,
``test_greedy`` and where measured ``test_beam4``, each ``{bleu, rouge1, rouge2, rougeL, exact_match}``
as ``uer.tasks.text_metrics.text_scores`` returns them) and their ``summary``: mean and sample
standard deviation per split and metric.

    python experiments/text2text/common.py     # the experiments/RESULTS.md tables of both files
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import mean_std, recipe_change  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "datasets" / "msra_entities"
SEEDS = (1, 2, 3)
# conf/experiment/msra_entities_text2text.yaml holds the same values (tests/unit/test_msra_entities.py checks).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": 128}
RECIPE = {"epochs_num": 2, "batch_size": 32, "learning_rate": 1e-3, "warmup": 0.1, "weight_decay": 0.01,
          "eps": 1e-6, "max_grad_norm": 1.0, "source_length": 128, "target_length": 96,
          "max_new_tokens": 96}
BEST_METRIC = "rougeL"
BEAMS = 4
SPLITS = ("dev", "test_greedy", f"test_beam{BEAMS}")
METRICS = ("exact_match", "rougeL", "rouge1", "rouge2", "bleu")


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one run) over the seeds, per split and metric."""
    out = {}
    for split in SPLITS:
        values = {name: [run[split][name] for run in runs if split in run] for name in METRICS}
        if values["exact_match"]:
            out[split] = {name: mean_std(vals) for name, vals in values.items()}
    return out


def load_runs(path: Path, recipe: dict | None = None) -> dict[int, dict]:
    """The runs of ``path`` measured with ``recipe`` (default ``RECIPE``; ``seed_results.load_runs``)."""
    return seed_results.load_runs(path, recipe or RECIPE)


def store(path: Path, header: dict, runs: dict[int, dict]) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now of the same recipe, with their summary
    (``seed_results.store``)."""
    return seed_results.store(path, header, runs, summary)


def cell(path: Path, split: str) -> str:
    """``EM m ± s, ROUGE-L m ± s, BLEU m ± s (n=N)`` in percent (BLEU as sacrebleu gives it), "not run yet",
    or "not run with this recipe" when the file holds runs of another one."""
    if not path.is_file():
        return "not run yet"
    changed = recipe_change(path, RECIPE)
    if changed:
        return f"not run with this recipe yet (`{path.name}` holds {changed})"
    found = json.loads(path.read_text(encoding="utf-8"))["summary"].get(split)
    if not found:
        return "not run yet"
    parts = []
    for name, label, scale in (("exact_match", "EM", 100), ("rougeL", "ROUGE-L", 100), ("bleu", "BLEU", 1)):
        parts.append(f"{label} {scale * found[name]['mean']:.2f} ± {scale * found[name]['std']:.2f}")
    return f"{', '.join(parts)} (n={found['exact_match']['n']})"


def always_none(split: str) -> str:
    """The scores of writing 无 (no entity) for every sentence of ``split``: what learning must beat."""
    sys.path.insert(0, str(ROOT))
    from uer.tasks.text_metrics import text_scores

    with (DATA / f"{split}.tsv").open(encoding="utf-8") as f:
        references = [line.rstrip("\n").split("\t")[1] for line in list(f)[1:]]
    found = text_scores(["无"] * len(references), references, tokenize="zh")
    return f"EM {100 * found['exact_match']:.2f}, ROUGE-L {100 * found['rougeL']:.2f}, BLEU {found['bleu']:.2f}"


def rows() -> str:
    """The experiments/RESULTS.md table: one row per scored split, both toolkits side by side."""
    hf, uer = HERE / "results_hf.json", HERE / "results_uer.json"
    lines = ["| split | uer, `experiment=msra_entities_text2text` | transformers `Seq2SeqTrainer` | always 无 |",
             "| --- | --- | --- | --- |"]
    for split, label, data in (("dev", "dev (best epoch)", "dev"), ("test_greedy", "test, greedy", "test"),
                               (f"test_beam{BEAMS}", f"test, beam {BEAMS}", "test")):
        ours, theirs = cell(uer, split), cell(hf, split)
        if split == "dev" or split == "test_greedy" or ours != theirs:  # beam 4: where a side measured it
            lines.append(f"| {label} | {ours} | {theirs} | {always_none(data)} |")
    return "\n".join(lines)


def per_seed() -> str:
    """Every seed's scores (percent; BLEU 0-100) from both results files."""
    lines = ["| toolkit | seed | best epoch | dev EM / ROUGE-L | test EM | test ROUGE-1 / 2 / L | test BLEU |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, path in (("uer", HERE / "results_uer.json"), ("transformers", HERE / "results_hf.json")):
        for seed, run in sorted(load_runs(path).items()):
            dev, test = run["dev"], run["test_greedy"]
            lines.append(f"| {name} | {seed} | {run['best_epoch']} | {100 * dev['exact_match']:.2f} / "
                         f"{100 * dev['rougeL']:.2f} | {100 * test['exact_match']:.2f} | {100 * test['rouge1']:.2f} / "
                         f"{100 * test['rouge2']:.2f} / {100 * test['rougeL']:.2f} | {test['bleu']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rows())
    print()
    print(per_seed())
