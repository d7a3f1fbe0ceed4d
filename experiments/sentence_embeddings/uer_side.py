"""Reproduction (not CI): uer's side of issue 25's sentence-embedding numbers, ``experiment=chinese_stsb_siamese``
and ``experiment=chinese_stsb_simcse``.

    python experiments/sentence_embeddings/uer_side.py --task siamese             # seeds 1 2 3, one thread
    python experiments/sentence_embeddings/uer_side.py --task simcse --seeds 1    # one seed
    python experiments/sentence_embeddings/uer_side.py --task simcse --dry-run    # print the commands only

Each seed is one ``python main.py experiment=chinese_stsb_TASK seed=S hardware.num_threads=1`` run
(its Hydra run directory ``--work/TASK/seedS``); its ``results.jsonl`` gives the dev scores of the
best epoch (by Spearman) and the test scores of that model, which go to ``--out`` (default
``experiments/sentence_embeddings/results_uer_TASK.json``, the shape of ``st_side.py``'s; see
``common.py``), merged with the seeds already there. A seed whose run directory already has its
test scores is not run again. ``st_side.py`` is the same model, ids, data and recipe in
sentence-transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import BEST_METRIC, METRICS, MODEL, PRESETS, RECIPES, ROOT, SEEDS, TASKS, results_path, store
from seed_results import dev_and_test, preset_arguments, run_preset  # experiments/: common.py puts it on the path


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, test of that epoch's model."""
    found = dev_and_test(run_dir, BEST_METRIC)
    if found is None:
        return None
    best, dev, test = found
    return {"seed": seed, "best_epoch": best.get("epoch"), "dev": {name: best[name] for name in METRICS},
            "dev_by_epoch": [{"epoch": record.get("epoch"), **{name: record[name] for name in METRICS}}
                             for record in dev],
            "test": {name: test[name] for name in METRICS}}


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "stsemb_repro", None,
                            ("--task", {"choices": TASKS, "required": True}))
    args.work, args.out = args.work / args.task, args.out or results_path("uer", args.task)
    preset = PRESETS[args.task]
    header = {"toolkit": "uer", "command": "python experiments/sentence_embeddings/uer_side.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={preset}", "data": "datasets/chinese_stsb", "model": MODEL,
              "recipe": RECIPES[args.task], "best_metric": BEST_METRIC, "threads": args.threads}
    run_preset(preset, args.seeds, args, scores, lambda runs: store(args.out, header, runs))


if __name__ == "__main__":
    main()
