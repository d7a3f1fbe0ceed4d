"""A reproduction's results file (``experiments/*/results_*.json``): a header (toolkit, command, model,
recipe), one entry per seed under ``runs`` and their ``summary``, and the mean and sample standard
deviation that summaries hold."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from uer.io.atomic import atomic_write_text


def mean_std(values: list[float]) -> dict:
    """``{mean, n, std}``: the sample standard deviation (n-1; 0 for one value)."""
    return {"mean": statistics.mean(values), "n": len(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def recipe_change(path: Path, recipe: dict) -> str | None:
    """How the recipe ``path``'s runs were measured with differs from ``recipe`` (None: the same, or no file)."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8")).get("recipe") or {}
    changed = [f"{key} {stored.get(key)}" for key, value in recipe.items() if stored.get(key) != value]
    return ", ".join(changed) or None


def check_results_file(path: Path) -> Path:
    """``path`` as a reproduction's ``--out``, checked before any seed runs: a new file in an existing directory,
    or a results file (a JSON object with its ``runs``) whose seeds a run joins; anything else (a data set, a
    directory) is one line on standard error and exit 1, so that storing a result never overwrites an input."""
    fix = "choose a new file name or an experiments/*/results_*.json"
    if path.is_dir():
        sys.exit(f"--out {path} is a directory; it names the results file: {fix}")
    if not path.exists():
        if not path.parent.is_dir():
            sys.exit(f"--out {path}: the directory {path.parent} does not exist; create it or {fix}")
        return path
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        sys.exit(f"--out {path} is not a results file ({type(err).__name__}) and storing a seed would overwrite "
                 f"it; {fix}")
    if not (isinstance(record, dict) and isinstance(record.get("runs"), list)):
        sys.exit(f"--out {path} is a JSON file without a \"runs\" list, not a results file, and storing a seed "
                 f"would overwrite it; {fix}")
    return path


def load_runs(path: Path, recipe: dict | None = None) -> dict[int, dict]:
    """The runs of a results file by seed: none when there is no file yet, or when it was measured with
    another recipe than ``recipe`` (when given), whose seeds a new run replaces instead of joining."""
    if not path.is_file() or (recipe is not None and recipe_change(path, recipe)):
        return {}
    return {run["seed"]: run for run in json.loads(path.read_text(encoding="utf-8"))["runs"]}


def store(path: Path, header: dict, runs: dict[int, dict], summary: Callable[[list[dict]], dict]) -> dict[int, dict]:
    """Write ``runs`` merged into the seeds ``path`` holds now of the same recipe (``header["recipe"]``; another
    process may have added one meanwhile), with ``summary`` of them all: a recipe change never averages two."""
    runs = {**load_runs(path, header.get("recipe")), **runs}
    ordered = [runs[seed] for seed in sorted(runs)]
    record = {**header, "runs": ordered, "summary": summary(ordered)}
    atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    return runs


def dev_and_test(run_dir: Path, metric: str) -> tuple[dict, list[dict], dict] | None:
    """From a ``main.py`` fine-tuning run's ``results.jsonl``: the dev record of the best epoch by ``metric``,
    every dev record, and the test record (of that epoch's model); None while the run has not scored test."""
    path = run_dir / "results.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    dev = [record for record in records if record.get("split") == "dev"]
    test = [record for record in records if record.get("split") == "test"]
    if not dev or not test:
        return None
    return max(dev, key=lambda record: record[metric]), dev, test[-1]


def split_summary(runs: list[dict], splits: tuple[str, ...], metrics: tuple[str, ...]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one run) over the seeds, per split and metric."""
    return {split: {name: mean_std([run[split][name] for run in runs]) for name in metrics} for split in splits}


def seed_entry(run_dir: Path, seed: int, metric: str, metrics: tuple[str, ...]) -> tuple[dict, dict] | None:
    """A finished ``main.py`` run's entry for a results file (``seed``, ``best_epoch``, ``dev`` of the best epoch by
    ``metric``, ``dev_by_epoch``, ``test`` of that epoch's model, each with ``metrics``) and its whole test record;
    None while the run has not scored test (:func:`dev_and_test`)."""
    found = dev_and_test(run_dir, metric)
    if found is None:
        return None
    best, dev, test = found
    return {"seed": seed, "best_epoch": best.get("epoch"), "dev": {name: best[name] for name in metrics},
            "dev_by_epoch": [{"epoch": record.get("epoch"), **{name: record[name] for name in metrics}}
                             for record in dev],
            "test": {name: test[name] for name in metrics}}, test


def run_preset(preset: str, seeds: list[int], args, scores: Callable[[Path, int], dict | None],
               store_runs: Callable[[dict], dict], out: Path, overrides: tuple[str, ...] = ()) -> None:
    """``python main.py experiment=PRESET seed=S hardware.num_threads=T`` (then ``overrides``) for each seed, one after
    another, in the run directory ``args.work/seedS`` (``args.threads``, ``args.work``; ``args.dry_run`` prints the commands);
    ``scores(run_dir, seed)`` reads a finished run's entry, and ``store_runs`` merges the entries into the results
    file ``out`` (checked first: :func:`check_results_file`). A seed whose run directory already has its scores
    is not run again."""
    check_results_file(out)
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    runs = {}
    for seed in seeds:
        run_dir = args.work.resolve() / f"seed{seed}"
        line = [sys.executable, "main.py", f"experiment={preset}", f"seed={seed}",
                f"hardware.num_threads={args.threads}", f"output_model_path={run_dir / 'model'}",
                f"hydra.run.dir={run_dir}", *overrides]
        if args.dry_run:
            print(shlex.join(line))
            continue
        entry = scores(run_dir, seed)
        if entry is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with (run_dir / "stdout.log").open("w", encoding="utf-8") as log:
                done = subprocess.run(line, cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT)
            seconds = time.perf_counter() - start
            if done.returncode:
                sys.exit(f"seed {seed}: exit {done.returncode}; see {run_dir / 'stdout.log'}")
            entry = scores(run_dir, seed)
            if entry is None:
                sys.exit(f"seed {seed}: no dev and test scores in {run_dir / 'results.jsonl'}")
            entry["wall_seconds"] = round(seconds, 1)  # the whole command: training, dev and test
        print(json.dumps(entry, ensure_ascii=False), flush=True)
        runs[seed] = entry
        runs = store_runs(runs)


def preset_arguments(description: str, seeds: tuple[int, ...], work: Path | None, out: Path | None,
                     *extra: tuple[str, dict]):
    """The command line of a uer side (``experiments/*/uer_*.py``): ``--seeds``, ``--threads``, ``--work`` (the
    run directories), ``--out`` (the results file), ``--dry-run``, and ``extra`` (flag, ``add_argument``
    keywords); for :func:`run_preset`. A ``work`` or ``out`` of None leaves the default to the caller."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, options in extra:
        parser.add_argument(flag, **options)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument("--threads", type=int, default=1, help="hardware.num_threads")
    parser.add_argument("--work", type=Path, default=work, help="run directories")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args()
