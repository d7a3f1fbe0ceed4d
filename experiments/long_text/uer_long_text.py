"""Reproduction (not CI): issue 25's long-text number, ``experiment=chnsenticorp_sliding`` with ``task.long_text=cut``
and ``task.long_text=sliding`` on ChnSentiCorp.

    python experiments/long_text/uer_long_text.py              # both variants, seeds 1 2 3, one thread, one at a time
    python experiments/long_text/uer_long_text.py --seeds 1    # one seed of each
    python experiments/long_text/uer_long_text.py --dry-run    # print the fine-tuning commands only

Each seed of each variant is one ``python main.py experiment=chnsenticorp_sliding seed=S hardware.num_threads=1
task.long_text=VARIANT`` run (its Hydra run directory ``--work/VARIANT/seedS``); its ``results.jsonl`` gives the dev
accuracy of the best evaluation and the test accuracy of that model. Then ``stage=infer`` with that model (its
``best.pt``, which keeps ``task.long_text``) predicts the test file again (``test_predictions.tsv`` in the run
directory), which gives the accuracy on the test rows longer than 64 tokens and on the others; their accuracy on all
rows must be the run's own test accuracy. The entries go to ``--out/results_VARIANT.json`` (default
``experiments/long_text/``; see ``common.py``), merged with the seeds already there. A seed whose run directory
already has its scores and predictions is not run again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import (BEST_METRIC, DATA, HERE, MODEL, PRESET, RECIPE, ROOT, SEEDS, SEQ_LENGTH, VARIANTS, accuracies,
                    labelled_rows, read_predictions, results_path, store, token_lengths)
from seed_results import (  # experiments/: common.py puts it on the path
    check_results_file, dev_and_test, preset_arguments, run_preset)

PREDICTIONS = "test_predictions.tsv"


def infer_command(run_dir: Path, threads: int) -> list[str]:
    """``stage=infer`` of the run's best model on the test file (labels ignored), into ``run_dir/PREDICTIONS``."""
    return [sys.executable, "main.py", "stage=infer", f"infer.load_model_path={run_dir / 'model' / 'best.pt'}",
            f"infer.test_path={DATA / 'test.tsv'}", f"infer.prediction_path={run_dir / PREDICTIONS}",
            f"hardware.num_threads={threads}", f"hydra.run.dir={run_dir / 'infer'}"]


def predict(run_dir: Path, threads: int) -> Path:
    """The run's test predictions, made now when the file is not there yet."""
    path = run_dir / PREDICTIONS
    if not path.is_file():
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with (run_dir / "infer.log").open("w", encoding="utf-8") as log:
            done = subprocess.run(infer_command(run_dir, threads), cwd=ROOT, env=environment, stdout=log,
                                  stderr=subprocess.STDOUT)
        if done.returncode:
            sys.exit(f"{run_dir}: stage=infer exit {done.returncode}; see {run_dir / 'infer.log'}")
    return path


def entry(seed: int, best: dict, test_acc: float, found: dict) -> dict:
    """A seed's results-file entry from its best dev record, the run's test accuracy and :func:`accuracies` of its
    predictions, which must agree with the run on all rows."""
    if abs(found["all"] - test_acc) > 1e-9:
        raise ValueError(f"seed {seed}: the predictions score {found['all']:.4f} on test, the run {test_acc:.4f}")
    return {"seed": seed, "best_step": best.get("step"), "dev": best[BEST_METRIC], "test": test_acc,
            "test_long": found["long"], "test_short": found["short"]}


def scorer(threads: int):
    """``scores(run_dir, seed)`` for :func:`seed_results.run_preset`: the entry of a finished run (predicting the
    test file first), None while the run has not scored test."""
    gold = [label for label, _ in labelled_rows("test")]
    lengths = token_lengths("test")

    def scores(run_dir: Path, seed: int) -> dict | None:
        found = dev_and_test(run_dir, BEST_METRIC)
        if found is None:
            return None
        best, _, test = found
        predicted = read_predictions(predict(run_dir, threads))
        return entry(seed, best, test["acc"], accuracies(gold, predicted, lengths, SEQ_LENGTH))

    return scores


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "long_text_repro", HERE)
    scores = scorer(args.threads)
    for variant in VARIANTS:  # both results files, before either variant runs
        check_results_file(args.out / results_path(variant).name)
    for variant in VARIANTS:
        header = {"toolkit": "uer", "variant": variant,
                  "command": "python experiments/long_text/uer_long_text.py " + " ".join(sys.argv[1:]),
                  "preset": f"experiment={PRESET} task.long_text={variant}", "data": "datasets/chnsenticorp",
                  "model": MODEL, "recipe": RECIPE, "best_metric": BEST_METRIC, "threads": args.threads}
        out = args.out / results_path(variant).name
        work = argparse.Namespace(**{**vars(args), "work": args.work / variant})
        run_preset(PRESET, args.seeds, work, scores, lambda runs, header=header, out=out: store(out, header, runs),
                   out, overrides=(f"task.long_text={variant}",))


if __name__ == "__main__":
    main()
