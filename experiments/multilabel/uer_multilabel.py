"""Reproduction (not CI): uer's side of issue 25's multi-label reproduction, ``experiment=msra_entity_types_multilabel``.

    python experiments/multilabel/uer_multilabel.py              # seeds 1 2 3, one thread, one after another
    python experiments/multilabel/uer_multilabel.py --seeds 1    # one seed
    python experiments/multilabel/uer_multilabel.py --dry-run    # print the commands only

Each seed is one ``python main.py experiment=msra_entity_types_multilabel seed=S hardware.num_threads=1``
run (its Hydra run directory ``--work/seedS``); its ``results.jsonl`` gives the dev scores of the
best epoch (by the preset's ``finetune.metric``) and the test scores of that model, which go to
``--out`` (default ``experiments/multilabel/results_uer.json``, the shape of ``results_hf.json``; see
``common.py``), merged with the seeds already there. A seed whose run directory already has its
test scores is not run again. ``hf_multilabel.py`` is the same model, data and recipe in transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import BEST_METRIC, HERE, METRICS, MODEL, PRESET, RECIPE, ROOT, SEEDS, store
from seed_results import preset_arguments, run_preset, seed_entry  # experiments/: common.py puts it on the path


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, test of that epoch's model and its
    scores per class."""
    found = seed_entry(run_dir, seed, BEST_METRIC, METRICS)
    if found is None:
        return None
    entry, test = found
    return {**entry, "test_per_class": test["report"]["per_class"]}


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "multilabel_repro", HERE / "results_uer.json")
    header = {"toolkit": "uer", "command": "python experiments/multilabel/uer_multilabel.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={PRESET}", "data": "datasets/msra_entity_types", "model": MODEL,
              "recipe": RECIPE, "best_metric": BEST_METRIC, "threads": args.threads}
    run_preset(PRESET, args.seeds, args, scores, lambda runs: store(args.out, header, runs), args.out)


if __name__ == "__main__":
    main()
