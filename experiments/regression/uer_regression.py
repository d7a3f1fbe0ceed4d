"""Reproduction (not CI): uer's side of issue 25's regression reproduction, ``experiment=chinese_stsb_regression``.

    python experiments/regression/uer_regression.py              # seeds 1 2 3, one thread, one after another
    python experiments/regression/uer_regression.py --seeds 1    # one seed
    python experiments/regression/uer_regression.py --dry-run    # print the commands only

Each seed is one ``python main.py experiment=chinese_stsb_regression seed=S hardware.num_threads=1``
run (its Hydra run directory ``--work/seedS``); its ``results.jsonl`` gives the dev correlations of
the best epoch (by the preset's ``finetune.metric``, Spearman) and the test correlations of that
model, which go to ``--out`` (default ``experiments/regression/results_uer.json``, the shape of
``results_hf.json``; see ``common.py``), merged with the seeds already there. A seed whose run
directory already has its test scores is not run again. ``hf_regression.py`` is the same model,
data and recipe in transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import BEST_METRIC, HERE, METRICS, MODEL, PRESET, RECIPE, ROOT, SEEDS, store
from seed_results import preset_arguments, run_preset, seed_entry  # experiments/: common.py puts it on the path


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, test of that epoch's model."""
    found = seed_entry(run_dir, seed, BEST_METRIC, METRICS)
    return None if found is None else found[0]


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "regression_repro", HERE / "results_uer.json")
    header = {"toolkit": "uer", "command": "python experiments/regression/uer_regression.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={PRESET}", "data": "datasets/chinese_stsb", "model": MODEL,
              "recipe": RECIPE, "best_metric": BEST_METRIC, "threads": args.threads}
    run_preset(PRESET, args.seeds, args, scores, lambda runs: store(args.out, header, runs), args.out)


if __name__ == "__main__":
    main()
