"""What both variants of issue 25's long-text number share: the data, the model, the recipe, the results files,
and the scores of the test rows longer than the model's positions.

ChnSentiCorp (``datasets/chnsenticorp``) with ``experiment=chnsenticorp_sliding``: the rows longer than
``finetune.seq_length`` (64 tokens with ``[CLS]`` and ``[SEP]``) are read in sliding windows (``sliding``) or cut to
their first 64 tokens (``cut``, the same preset with ``task.long_text=cut``). A results file
(``results_cut.json``, ``results_sliding.json``) holds the variant, the command, the model and recipe, one entry per
seed (``seed``, ``best_step`` and ``dev`` of the best evaluation, ``test`` of that model as the run scored it,
``test_long`` and ``test_short``: its accuracy on the test rows longer than 64 tokens and on the others, from its
predictions) and their ``summary``: mean and sample standard deviation of each.

    python experiments/long_text/common.py     # the experiments/RESULTS.md tables
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seed_results  # noqa: E402  (experiments/, put on the path just above)
from seed_results import load_runs, mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATA = ROOT / "datasets" / "chnsenticorp"
VOCAB = ROOT / "models" / "google_zh_vocab.txt"
PRESET = "chnsenticorp_sliding"
SEEDS = (1, 2, 3)
VARIANTS = ("cut", "sliding")  # task.long_text
SEQ_LENGTH = 64
# conf/experiment/chnsenticorp_sliding.yaml holds the same values (tests/unit/test_long_text_experiment.py checks).
MODEL = {"hidden_size": 128, "layers_num": 3, "heads_num": 4, "feedforward_size": 512, "dropout": 0.1,
         "max_seq_length": SEQ_LENGTH}
RECIPE = {"max_steps": 300, "eval_every_steps": 100, "batch_size": 32, "learning_rate": 5e-4, "warmup": 0.1,
          "weight_decay": 0.01, "eps": 1e-6, "max_grad_norm": 1.0, "seq_length": SEQ_LENGTH, "stride": None,
          "window_pooling": "mean"}
BEST_METRIC = "acc"
SCORES = ("dev", "test", "test_long", "test_short")  # accuracy each
LENGTH_LIMITS = (64, 128, 256, 512)


def results_path(variant: str) -> Path:
    return HERE / f"results_{variant}.json"


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one run) of each accuracy over the seeds."""
    return {name: mean_std([run[name] for run in runs]) for name in SCORES}


def store(path: Path, header: dict, runs: dict[int, dict]) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now, with their summary (``seed_results.store``)."""
    return seed_results.store(path, header, runs, summary)


def token_lengths(split: str) -> list[int]:
    """Each row's input length in tokens, ``[CLS] text_a [SEP]`` with the preset's tokenizer (BERT's rules over
    ``models/google_zh_vocab.txt``), in file order."""
    sys.path.insert(0, str(ROOT))
    from uer.tokenizers import build_tokenizer  # lazy: uer is on the path only from here

    tokenizer = build_tokenizer({"type": "bert", "vocab_path": str(VOCAB)})
    return [len(tokenizer.encode(text)) + 2 for _, text in labelled_rows(split)]


def labelled_rows(split: str) -> list[tuple[int, str]]:
    """``(label, text_a)`` of every row of ``datasets/chnsenticorp/SPLIT.tsv`` after its header, in file order."""
    with (DATA / f"{split}.tsv").open(encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in list(f)[1:]]
    return [(int(label), text) for label, text in rows]


def read_predictions(path: Path) -> list[int]:
    """The ``label`` column of a ``stage=infer`` prediction file, in row order."""
    with path.open(encoding="utf-8") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f]
    column = header.index("label")
    return [int(row[column]) for row in rows]


def accuracies(gold: list[int], predicted: list[int], lengths: list[int], limit: int) -> dict:
    """Accuracy on all rows (``all``), on the rows of more than ``limit`` tokens (``long``) and on the others
    (``short``); ``gold``, ``predicted`` and ``lengths`` are in the same row order."""
    if not len(gold) == len(predicted) == len(lengths):
        raise ValueError(f"{len(gold)} gold labels, {len(predicted)} predictions and {len(lengths)} lengths")

    def accuracy(keep) -> float:
        pairs = [(g, p) for g, p, n in zip(gold, predicted, lengths) if keep(n)]
        return sum(g == p for g, p in pairs) / len(pairs)

    return {"all": accuracy(lambda n: True), "long": accuracy(lambda n: n > limit),
            "short": accuracy(lambda n: n <= limit)}


def length_row(split: str, lengths: list[int]) -> str:
    """One row of the length table: rows, median, 90th percentile, longest, share above each limit."""
    ordered = sorted(lengths)
    counts = [sum(n > limit for n in lengths) for limit in LENGTH_LIMITS]
    above = " | ".join(f"{count} ({100 * count / len(lengths):.1f}%)" for count in counts)
    return (f"| {split} | {len(lengths)} | {statistics.median(ordered):g} | {ordered[int(0.9 * len(ordered))]} | "
            f"{ordered[-1]} | {above} |")


def length_table() -> str:
    """The token-length distribution of each split (``[CLS] text [SEP]``)."""
    lines = ["| split | rows | median | 90th percentile | longest | " +
             " | ".join(f"> {limit}" for limit in LENGTH_LIMITS) + " |",
             "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in LENGTH_LIMITS) + " |"]
    lines += [length_row(split, token_lengths(split)) for split in ("train", "dev", "test")]
    return "\n".join(lines)


def cell(found: dict) -> str:
    return f"{100 * found['mean']:.2f} ± {100 * found['std']:.2f} (n={found['n']})"


def rows() -> str:
    """The experiments/RESULTS.md table: one row per variant, accuracy (percent) mean ± sample std."""
    lengths = token_lengths("test")
    long = sum(n > SEQ_LENGTH for n in lengths)
    lines = [f"| `task.long_text` | dev acc (best evaluation) | test acc | test acc, {long} rows > {SEQ_LENGTH} "
             f"tokens | test acc, {len(lengths) - long} rows ≤ {SEQ_LENGTH} tokens |",
             "| --- | --- | --- | --- | --- |"]
    for variant in VARIANTS:
        path = results_path(variant)
        if not path.is_file():
            lines.append(f"| {variant} | not run yet | | | |")
            continue
        found = json.loads(path.read_text(encoding="utf-8"))["summary"]
        lines.append(f"| {variant} | " + " | ".join(cell(found[name]) for name in SCORES) + " |")
    return "\n".join(lines)


def per_seed() -> str:
    """Every seed's accuracies (percent) from both results files."""
    lines = ["| `task.long_text` | seed | best step | dev | test | test, long rows | test, short rows | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant in VARIANTS:
        for seed, run in sorted(load_runs(results_path(variant)).items()):
            scores = " | ".join(f"{100 * run[name]:.2f}" for name in SCORES)
            lines.append(f"| {variant} | {seed} | {run['best_step']} | {scores} | {run.get('wall_seconds', '—')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(length_table())
    print()
    print(rows())
    print()
    print(per_seed())
