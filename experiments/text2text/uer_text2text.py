"""Reproduction (not CI): uer's side of issue 22's text-to-text reproductions (``common.DATASETS``).

    python experiments/text2text/uer_text2text.py                    # entities: msra_entities_text2text, seeds 1 2 3
    python experiments/text2text/uer_text2text.py --task types       # types: msra_entity_types_text2text
    python experiments/text2text/uer_text2text.py --seeds 1          # one seed
    python experiments/text2text/uer_text2text.py --dry-run          # print the commands only

Each seed is one ``python main.py experiment=PRESET seed=S hardware.num_threads=1`` run (one thread, one
after another; its Hydra run directory ``--work/seedS``, default ``outputs/text2text_repro`` for entities,
``outputs/text2text_types`` for types); its ``results.jsonl`` gives the dev scores of the best epoch (by the
preset's ``finetune.metric``) and the test scores of that model, which go to ``--out`` (default the data
set's ``results_uer.json`` / ``results_types_uer.json``, the shape of the transformers side's; see
``common.py``), merged with the seeds already there. For ``types`` the best model also writes its dev and
test generations (``stage=infer``, into the run directory), scored by ``common.type_scores`` as the
transformers side scores its own. A seed whose run directory already has its scores is not run again.
``hf_seq2seq.py`` is the same model, data and recipe in transformers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import DATASETS, METRICS, MODEL, ROOT, SEEDS, TASK_ARGUMENT, Dataset, references, store, type_scores
from seed_results import dev_and_test, preset_arguments, run_preset  # experiments/: common.py puts it on the path


def generations(run_dir: Path, dataset: Dataset, split: str, threads: int) -> list[str]:
    """The best model's generations for ``split`` (``stage=infer`` once; its TSV kept in ``run_dir``)."""
    path = run_dir / f"{split}_generations.tsv"
    if not path.is_file():
        line = [sys.executable, "main.py", "stage=infer", f"infer.load_model_path={run_dir / 'model'}",
                f"infer.test_path={dataset.data / f'{split}.tsv'}", f"infer.prediction_path={path}",
                f"hardware.num_threads={threads}", f"hydra.run.dir={run_dir / f'infer_{split}'}"]
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with (run_dir / f"infer_{split}.log").open("w", encoding="utf-8") as log:
            done = subprocess.run(line, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            sys.exit(f"{split} generations: exit {done.returncode}; see {run_dir / f'infer_{split}.log'}")
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[1] if "\t" in row else "" for row in rows]


def scores(run_dir: Path, seed: int, dataset: Dataset, threads: int) -> dict | None:
    """The seed's entry from ``run_dir/results.jsonl``: dev of the best epoch, the test record (greedy), and for
    ``types`` the type scores of the best model's generations."""
    found = dev_and_test(run_dir, dataset.best_metric)
    if found is None:
        return None
    best, dev, test = found
    entry = {"seed": seed, "best_epoch": best.get("epoch"),
             "dev": {name: best[name] for name in METRICS},
             "dev_by_epoch": [{"epoch": record.get("epoch"), dataset.best_metric: record[dataset.best_metric],
                               "exact_match": record["exact_match"]} for record in dev],
             "test_greedy": {name: test[name] for name in METRICS}}
    if dataset.scores_types:
        for split, key in (("dev", "dev"), ("test", "test_greedy")):
            entry[key].update(type_scores(generations(run_dir, dataset, split, threads), references(dataset, split)))
    return entry


def main() -> None:
    args = preset_arguments(__doc__, SEEDS, None, None, TASK_ARGUMENT)
    dataset = DATASETS[args.task]
    args.work, args.out = args.work or dataset.work, args.out or dataset.results("uer")
    header = {"toolkit": "uer", "command": "python experiments/text2text/uer_text2text.py " + " ".join(sys.argv[1:]),
              "preset": f"experiment={dataset.preset}", "data": str(dataset.data.relative_to(ROOT)), "model": MODEL,
              "recipe": dataset.recipe, "best_metric": dataset.best_metric, "threads": args.threads}
    run_preset(dataset.preset, args.seeds, args, lambda run_dir, seed: scores(run_dir, seed, dataset, args.threads),
               lambda runs: store(args.out, header, runs, dataset), args.out)


if __name__ == "__main__":
    main()
