"""Reproduction (not CI): the original toolkit's ``run_classifier.py`` beside ``experiment=bert_douban``.

    python experiments/original_recipe.py --original ~/UER-py                 # both toolkits, seeds 7 11 13
    python experiments/original_recipe.py --original ~/UER-py --jobs 2        # two one-thread runs at a time
    python experiments/original_recipe.py --original ~/UER-py --seeds 7 --dry-run   # print the commands only
    python experiments/original_recipe.py --original ~/UER-py --table-only    # the table from finished runs

The recipe (issue "Exact to the original"): tiny BERT (``models/bert_tiny_config.json``) from
random weights, fine-tuned on ``datasets/douban_book_review`` for 1 epoch, batch 64, learning
rate 1e-4, sequence length 128, one thread per run. ``--original`` is a checkout of UER-py at
revision 4e7597d (it needs ``six`` besides torch); its own ``models/google_zh_vocab.txt`` and
``models/bert_tiny_config.json`` are used on its side, this repository's copies on ours.

Each run writes ``--out/original_seedS.log`` or ``--out/ours_seedS/`` (Hydra run directory,
``results.jsonl``); a run whose scores are already there is skipped, so an interrupted
comparison continues where it stopped. At the end the Markdown table of experiments/RESULTS.md
is printed: dev / test accuracy per seed, then mean and sample standard deviation per toolkit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "douban_book_review"
RECIPE = {"epochs_num": 1, "batch_size": 64, "learning_rate": "1e-4", "seq_length": 128}
ORIGINAL_ACCURACY = re.compile(r"Acc\. \(Correct/Total\): ([0-9.]+)")


def original_command(seed: int) -> list[str]:
    """The original's command, run from its checkout."""
    return [sys.executable, "-u", "run_classifier.py",
            "--vocab_path", "models/google_zh_vocab.txt", "--config_path", "models/bert_tiny_config.json",
            "--train_path", str(DATA / "train.tsv"), "--dev_path", str(DATA / "dev.tsv"),
            "--test_path", str(DATA / "test.tsv"),
            *(item for key, value in RECIPE.items() for item in (f"--{key}", str(value))),
            "--seed", str(seed)]


def ours_command(seed: int, run_dir: Path) -> list[str]:
    """The same command through the preset that reproduces the original's Douban command."""
    return [sys.executable, "main.py", "experiment=bert_douban",
            "model.config_path=models/bert_tiny_config.json", "pretrained_model_path=null",
            *(f"finetune.{key}={value}" for key, value in RECIPE.items()),
            f"seed={seed}", "hardware.num_threads=1",
            f"output_model_path={run_dir / 'model'}", f"hydra.run.dir={run_dir}"]


def original_scores(log: Path) -> tuple[float, float] | None:
    """(dev, test) accuracy from the original's log: it prints dev after each epoch, test last."""
    if not log.is_file():
        return None
    accuracies = ORIGINAL_ACCURACY.findall(log.read_text(encoding="utf-8", errors="replace"))
    return (float(accuracies[0]), float(accuracies[-1])) if len(accuracies) >= 2 else None


def ours_scores(run_dir: Path) -> tuple[float, float] | None:
    """(best dev, test) accuracy from our run's results.jsonl."""
    results = run_dir / "results.jsonl"
    if not results.is_file():
        return None
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    dev = [record["acc"] for record in records if record.get("split") == "dev"]
    test = [record["acc"] for record in records if record.get("split") == "test"]
    return (max(dev), test[-1]) if dev and test else None


def summary(scores: list[tuple[float, float]]) -> str:
    """'dev mean ± std / test mean ± std (n=N)' in percent; no std for a single run."""
    if not scores:
        return "–"
    columns = []
    for values in zip(*scores):
        percent = [100 * value for value in values]
        spread = f" ± {statistics.stdev(percent):.2f}" if len(percent) > 1 else ""
        columns.append(f"{statistics.mean(percent):.2f}{spread}")
    return f"{' / '.join(columns)} (n={len(scores)})"


def table(seeds: list[int], out: Path) -> str:
    def cell(scores: tuple[float, float] | None) -> str:
        return "not run" if scores is None else f"{100 * scores[0]:.2f} / {100 * scores[1]:.2f}"

    rows = ["| seed | original `run_classifier.py`: dev / test | ours, `experiment=bert_douban`: dev / test |",
            "| --- | --- | --- |"]
    theirs, ours = [], []
    for seed in seeds:
        original, own = original_scores(out / f"original_seed{seed}.log"), ours_scores(out / f"ours_seed{seed}")
        theirs += [original] if original else []
        ours += [own] if own else []
        rows.append(f"| {seed} | {cell(original)} | {cell(own)} |")
    rows.append(f"| mean ± sample std | {summary(theirs)} | {summary(ours)} |")
    return "\n".join(rows)


def run_all(runs: list[tuple[str, list[str], Path, Path]], jobs: int) -> list[str]:
    """Start each (name, command, cwd, log) with one thread, at most ``jobs`` at a time; names of failed runs."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running, failed = list(runs), [], []
    while pending or running:
        while pending and len(running) < jobs:
            name, command, cwd, log = pending.pop(0)
            print(f"start {name}: log {log}", flush=True)
            with log.open("w", encoding="utf-8") as stream:
                process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=stream, stderr=subprocess.STDOUT)
            running.append((name, process, time.monotonic()))
        time.sleep(5)
        for entry in [entry for entry in running if entry[1].poll() is not None]:
            name, process, started = entry
            running.remove(entry)
            minutes = (time.monotonic() - started) / 60
            print(f"{name}: {'done' if process.returncode == 0 else f'FAILED (exit {process.returncode})'} "
                  f"in {minutes:.0f} min", flush=True)
            failed += [name] if process.returncode else []
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", required=True, type=Path, help="a checkout of UER-py at revision 4e7597d")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "original_recipe")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses one thread)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs in --out, run nothing")
    args = parser.parse_args()
    original = args.original.expanduser().resolve()
    for needed in ("run_classifier.py", "models/google_zh_vocab.txt", "models/bert_tiny_config.json"):
        if not (original / needed).is_file():
            parser.error(f"--original {original} has no {needed}; give a checkout of UER-py (revision 4e7597d)")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")
    out = args.out.resolve()

    runs = []
    for seed in args.seeds:
        if original_scores(out / f"original_seed{seed}.log") is None:
            runs.append((f"original seed {seed}", original_command(seed), original, out / f"original_seed{seed}.log"))
        if ours_scores(out / f"ours_seed{seed}") is None:
            runs.append((f"ours seed {seed}", ours_command(seed, out / f"ours_seed{seed}"), ROOT,
                         out / f"ours_seed{seed}.log"))
    if args.dry_run:
        for name, command, cwd, log in runs:
            print(f"## {name} (in {cwd}, one thread, log {log})\n{shlex.join(command)}")
        return
    if not args.table_only and runs:
        out.mkdir(parents=True, exist_ok=True)
        failed = run_all(runs, args.jobs)
        if failed:
            print(f"error: {', '.join(failed)} failed; see the logs in {out}", file=sys.stderr)
            print(table(args.seeds, out))
            sys.exit(1)
    print(table(args.seeds, out))


if __name__ == "__main__":
    main()
