"""Reproduction (not CI): uer's side of issue 22's text-to-text reproduction, ``experiment=msra_entities_text2text``.

    python experiments/text2text/uer_text2text.py              # seeds 1 2 3, one thread, one after another
    python experiments/text2text/uer_text2text.py --seeds 1    # one seed
    python experiments/text2text/uer_text2text.py --dry-run    # print the commands only

Each seed is one ``python main.py experiment=msra_entities_text2text seed=S hardware.num_threads=1``
run (its Hydra run directory ``--work/seedS``); its ``results.jsonl`` gives the dev scores of the
best epoch (by the preset's ``finetune.metric``) and the test scores of that model, which go to
``--out`` (default ``experiments/text2text/results_uer.json``, the shape of ``results_hf.json``; see
``common.py``), merged with the seeds already there. A seed whose run directory already has its
test scores is not run again. ``hf_seq2seq.py`` is the same model, data and recipe in transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import BEST_METRIC, HERE, METRICS, MODEL, RECIPE, ROOT, SEEDS, load_runs, store

PRESET = "msra_entities_text2text"


def command(seed: int, run_dir: Path, threads: int) -> list[str]:
    return [sys.executable, "main.py", f"experiment={PRESET}", f"seed={seed}", f"hardware.num_threads={threads}",
            f"output_model_path={run_dir / 'model'}", f"hydra.run.dir={run_dir}"]


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, the test record (greedy)."""
    path = run_dir / "results.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    dev = [record for record in records if record.get("split") == "dev"]
    test = [record for record in records if record.get("split") == "test"]
    if not dev or not test:
        return None
    best = max(dev, key=lambda record: record[BEST_METRIC])
    return {"seed": seed, "best_epoch": best.get("epoch"),
            "dev": {name: best[name] for name in METRICS},
            "dev_by_epoch": [{"epoch": record.get("epoch"), BEST_METRIC: record[BEST_METRIC],
                              "exact_match": record["exact_match"]} for record in dev],
            "test_greedy": {name: test[-1][name] for name in METRICS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1, help="hardware.num_threads")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "text2text_repro", help="run directories")
    parser.add_argument("--out", type=Path, default=HERE / "results_uer.json")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()

    runs = load_runs(args.out)
    header = {"toolkit": "uer", "command": "python experiments/text2text/uer_text2text.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={PRESET}", "data": "datasets/msra_entities", "model": MODEL, "recipe": RECIPE,
              "best_metric": BEST_METRIC, "threads": args.threads}
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for seed in args.seeds:
        run_dir = args.work.resolve() / f"seed{seed}"
        line = command(seed, run_dir, args.threads)
        if args.dry_run:
            print(shlex.join(line))
            continue
        entry = scores(run_dir, seed)
        if entry is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with (run_dir / "stdout.log").open("w", encoding="utf-8") as log:
                done = subprocess.run(line, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
            seconds = time.perf_counter() - start
            if done.returncode:
                sys.exit(f"seed {seed}: exit {done.returncode}; see {run_dir / 'stdout.log'}")
            entry = scores(run_dir, seed)
            if entry is None:
                sys.exit(f"seed {seed}: no dev and test scores in {run_dir / 'results.jsonl'}")
            entry["wall_seconds"] = round(seconds, 1)  # the whole command: training, dev and test generation
        print(json.dumps(entry, ensure_ascii=False), flush=True)
        runs[seed] = entry
        runs = store(args.out, header, runs)


if __name__ == "__main__":
    main()
