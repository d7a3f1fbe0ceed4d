"""What both sides of the text-to-text reproductions share: the data sets, the model, each data set's recipe,
the scorer and the results files.

Two data sets (``DATASETS``, the scripts' ``--task``), one model (``MODEL``):

* ``entities``: ``datasets/msra_entities`` (a sentence's entities written out), ``experiment=msra_entities_text2text``,
  results in ``results_uer.json`` / ``results_hf.json``; the documented failure (both toolkits write 无 for all);
* ``types``: ``datasets/msra_entity_types_text`` (the entity types a sentence names, written as text),
  ``experiment=msra_entity_types_text2text``, results in ``results_types_uer.json`` / ``results_types_hf.json``;
  besides the text metrics, each split has the set-level scores of the types read back from the text
  (``type_scores``: ``micro_f1``, ``macro_f1``, ``acc`` = exact set, as the multi-label reproduction scores them).

A results file holds the toolkit, the command, the model and recipe, one entry per seed (``seed``,
``best_epoch``, ``dev`` of the best epoch, ``test_greedy`` and where measured ``test_beam4``, each
``{bleu, rouge1, rouge2, rougeL, exact_match}`` as ``uer.tasks.text_metrics.text_scores`` returns them, plus
``type_scores`` for ``types``) and their ``summary``: mean and sample standard deviation per split and metric.

    python experiments/text2text/common.py                 # the experiments/RESULTS.md tables of entities
    python experiments/text2text/common.py --task types    # those of types
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import mean_std, recipe_change  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SEEDS = (1, 2, 3)
# Each preset holds the same values (tests/unit/test_msra_entities.py and test_msra_entity_types_text.py check).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": 128}
BEAMS = 4
SPLITS = ("dev", "test_greedy", f"test_beam{BEAMS}")
METRICS = ("exact_match", "rougeL", "rouge1", "rouge2", "bleu")
TYPE_METRICS = ("micro_f1", "macro_f1", "acc")
NONE = "无"
TYPE_NAMES = ("人名", "地名", "机构")  # PER, LOC, ORG: experiments/text2text/make_msra_entities.py's TYPES
TYPE_SEP = "；"


class Dataset(NamedTuple):
    """One reproduction: its data, preset, recipe, the dev metric that picks the best epoch, where its results go,
    and the scores its tables show (metric, label, scale)."""

    name: str
    data: Path
    preset: str
    recipe: dict
    best_metric: str
    results_stem: str
    work: Path
    shown: tuple[tuple[str, str, float], ...]
    scores_types: bool = False

    def results(self, side: str) -> Path:
        """The results file of ``side`` (``uer`` or ``hf``)."""
        return HERE / f"{self.results_stem}_{side}.json"

    def metrics(self) -> tuple[str, ...]:
        return METRICS + (TYPE_METRICS if self.scores_types else ())


ENTITIES = Dataset(
    name="entities", data=ROOT / "datasets" / "msra_entities", preset="msra_entities_text2text",
    recipe={"epochs_num": 2, "batch_size": 32, "learning_rate": 1e-3, "warmup": 0.1, "weight_decay": 0.01,
            "eps": 1e-6, "max_grad_norm": 1.0, "source_length": 128, "target_length": 96, "max_new_tokens": 96},
    best_metric="rougeL", results_stem="results", work=ROOT / "outputs" / "text2text_repro",
    shown=(("exact_match", "EM", 100), ("rougeL", "ROUGE-L", 100), ("bleu", "BLEU", 1)))
TYPES = Dataset(
    name="types", data=ROOT / "datasets" / "msra_entity_types_text", preset="msra_entity_types_text2text",
    recipe={"epochs_num": 6, "batch_size": 32, "learning_rate": 1e-3, "warmup": 0.1, "weight_decay": 0.01,
            "eps": 1e-6, "max_grad_norm": 1.0, "source_length": 128, "target_length": 12, "max_new_tokens": 10},
    best_metric="exact_match", results_stem="results_types", work=ROOT / "outputs" / "text2text_types",
    shown=(("exact_match", "EM", 100), ("micro_f1", "type micro-F1", 100), ("macro_f1", "type macro-F1", 100)),
    scores_types=True)
DATASETS = {dataset.name: dataset for dataset in (ENTITIES, TYPES)}
TASK_ARGUMENT = ("--task", {"choices": sorted(DATASETS), "default": ENTITIES.name,
                            "help": "entities: datasets/msra_entities; types: datasets/msra_entity_types_text"})


def types_in(text: str) -> set[str]:
    """The entity types a generated text names: its ``；``-separated parts that are a type's name (无, repeats and
    anything else written add nothing)."""
    return {part.strip() for part in text.split(TYPE_SEP)} & set(TYPE_NAMES)


def type_scores(generated: list[str], references: list[str]) -> dict[str, float]:
    """``{micro_f1, macro_f1, acc}`` of the type sets read back from ``generated`` against those of ``references``
    (``uer.tasks.metrics.multilabel_metrics``, the multi-label reproduction's scorer; ``acc``: exact set)."""
    from uer.tasks.metrics import multilabel_metrics  # lazy: uer is on the path only from the scripts' root

    def matrix(texts: list[str]) -> list[list[bool]]:
        return [[name in types_in(text) for name in TYPE_NAMES] for text in texts]

    return multilabel_metrics(matrix(references), matrix(generated))


def scores(generated: list[str], references: list[str], dataset: Dataset) -> dict[str, float]:
    """What a split of ``dataset`` is scored with: ``text_scores(..., tokenize="zh")`` (the code that scores
    ``task=text2text``), and for ``types`` the ``type_scores`` too."""
    from uer.tasks.text_metrics import text_scores  # lazy: as type_scores

    found = text_scores(generated, references, tokenize="zh")
    return {**found, **type_scores(generated, references)} if dataset.scores_types else found


def summary_of(dataset: Dataset):
    """The summary function of ``dataset``'s results files: mean and sample standard deviation (n-1; 0 for one
    run) over the seeds, per split and metric."""
    def summary(runs: list[dict]) -> dict:
        out = {}
        for split in SPLITS:
            measured = [run[split] for run in runs if split in run]
            if measured:
                out[split] = {name: mean_std([found[name] for found in measured]) for name in dataset.metrics()
                              if all(name in found for found in measured)}
        return out
    return summary


def load_runs(path: Path, dataset: Dataset = ENTITIES) -> dict[int, dict]:
    """The runs of ``path`` measured with ``dataset``'s recipe (``seed_results.load_runs``)."""
    return seed_results.load_runs(path, dataset.recipe)


def store(path: Path, header: dict, runs: dict[int, dict], dataset: Dataset = ENTITIES) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now of the same recipe, with their summary
    (``seed_results.store``)."""
    return seed_results.store(path, header, runs, summary_of(dataset))


def cell(path: Path, split: str, dataset: Dataset = ENTITIES) -> str:
    """The ``dataset.shown`` scores ``m ± s`` (percent; BLEU as sacrebleu gives it) and ``(n=N)``, "not run yet",
    or "not run with this recipe" when the file holds runs of another one."""
    if not path.is_file():
        return "not run yet"
    changed = recipe_change(path, dataset.recipe)
    if changed:
        return f"not run with this recipe yet (`{path.name}` holds {changed})"
    found = json.loads(path.read_text(encoding="utf-8"))["summary"].get(split)
    if not found:
        return "not run yet"
    parts = [f"{label} {scale * found[name]['mean']:.2f} ± {scale * found[name]['std']:.2f}"
             for name, label, scale in dataset.shown]
    return f"{', '.join(parts)} (n={found['exact_match']['n']})"


def references(dataset: Dataset, split: str) -> list[str]:
    """The targets of ``dataset``'s ``split`` (dev or test), in order."""
    with (dataset.data / f"{split}.tsv").open(encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[1] for line in list(f)[1:]]


def always_none(dataset: Dataset, split: str) -> str:
    """The scores of writing 无 (no entity) for every sentence of ``split``: what learning must beat (无 is also
    the most frequent target of both train sets)."""
    sys.path.insert(0, str(ROOT))
    targets = references(dataset, split)
    found = scores([NONE] * len(targets), targets, dataset)
    return ", ".join(f"{label} {scale * found[name]:.2f}" for name, label, scale in dataset.shown)


def rows(dataset: Dataset = ENTITIES) -> str:
    """The experiments/RESULTS.md table: one row per scored split, both toolkits side by side."""
    hf, uer = dataset.results("hf"), dataset.results("uer")
    lines = [f"| split | uer, `experiment={dataset.preset}` | transformers `Seq2SeqTrainer` | always 无 |",
             "| --- | --- | --- | --- |"]
    for split, label, data in (("dev", "dev (best epoch)", "dev"), ("test_greedy", "test, greedy", "test"),
                               (f"test_beam{BEAMS}", f"test, beam {BEAMS}", "test")):
        ours, theirs = cell(uer, split, dataset), cell(hf, split, dataset)
        if split == "dev" or split == "test_greedy" or ours != theirs:  # beam 4: where a side measured it
            lines.append(f"| {label} | {ours} | {theirs} | {always_none(dataset, data)} |")
    return "\n".join(lines)


def per_seed(dataset: Dataset = ENTITIES) -> str:
    """Every seed's ``dataset.shown`` scores (percent; BLEU 0-100) on dev and test (greedy) from both results files."""
    names = " / ".join(label for _, label, _ in dataset.shown)
    lines = [f"| toolkit | seed | best epoch | dev {names} | test {names} |", "| --- | --- | --- | --- | --- |"]
    for toolkit, side in (("uer", "uer"), ("transformers", "hf")):
        for seed, run in sorted(load_runs(dataset.results(side), dataset).items()):
            dev, test = ((" / ".join(f"{scale * run[split][name]:.2f}" for name, _, scale in dataset.shown))
                         for split in ("dev", "test_greedy"))
            lines.append(f"| {toolkit} | {seed} | {run['best_epoch']} | {dev} | {test} |")
    return "\n".join(lines)


def task_of(description: str, argv: list[str] | None = None) -> Dataset:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(TASK_ARGUMENT[0], **TASK_ARGUMENT[1])
    return DATASETS[parser.parse_args(argv).task]


if __name__ == "__main__":
    chosen = task_of(__doc__)
    print(rows(chosen))
    print()
    print(per_seed(chosen))
