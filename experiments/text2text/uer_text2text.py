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

import sys
from pathlib import Path

from common import BEST_METRIC, HERE, METRICS, MODEL, RECIPE, ROOT, SEEDS, store
from seed_results import dev_and_test, preset_arguments, run_preset  # experiments/: common.py puts it on the path

PRESET = "msra_entities_text2text"


def scores(run_dir: Path, seed: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, the test record (greedy)."""
    found = dev_and_test(run_dir, BEST_METRIC)
    if found is None:
        return None
    best, dev, test = found
    return {"seed": seed, "best_epoch": best.get("epoch"),
            "dev": {name: best[name] for name in METRICS},
            "dev_by_epoch": [{"epoch": record.get("epoch"), BEST_METRIC: record[BEST_METRIC],
                              "exact_match": record["exact_match"]} for record in dev],
            "test_greedy": {name: test[name] for name in METRICS}}


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, ROOT / "outputs" / "text2text_repro", HERE / "results_uer.json")
    header = {"toolkit": "uer", "command": "python experiments/text2text/uer_text2text.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={PRESET}", "data": "datasets/msra_entities", "model": MODEL, "recipe": RECIPE,
              "best_metric": BEST_METRIC, "threads": args.threads}
    run_preset(PRESET, args.seeds, args, scores, lambda runs: store(args.out, header, runs))


if __name__ == "__main__":
    main()
