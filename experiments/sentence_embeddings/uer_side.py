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

from common import BEST_METRIC, METRICS, MODEL, PRESETS, RECIPES, ROOT, SEEDS, TASKS, results_path, summary
from seed_results import preset_arguments, run_preset, seed_entry, store  # experiments/: common.py puts it on the path


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, test of that epoch's model."""
    found = seed_entry(run_dir, seed, BEST_METRIC, METRICS)
    return None if found is None else found[0]


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "stsemb_repro", None,
                            ("--task", {"choices": TASKS, "required": True}))
    args.work, args.out = args.work / args.task, args.out or results_path("uer", args.task)
    preset = PRESETS[args.task]
    command = "python experiments/sentence_embeddings/uer_side.py " + " ".join(sys.argv[1:])
    header = {"toolkit": "uer", "command": command,
              "preset": f"experiment={preset}", "data": "datasets/chinese_stsb", "model": MODEL,
              "recipe": RECIPES[args.task], "best_metric": BEST_METRIC, "threads": args.threads}
    run_preset(preset, args.seeds, args, scores, lambda runs: store(args.out, header, runs, summary), args.out)


if __name__ == "__main__":
    main()
