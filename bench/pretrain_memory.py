"""Peak resident memory of ``stage=pretrain`` and how it scales with corpus size.

    python bench/pretrain_memory.py                 # size=base, batch 16, seq 128, corpus x1 and x10

Builds an MLM dataset from corpora/book_review.txt and from the same corpus repeated
``--times`` times, runs a few pre-training steps on each through ``main.py`` in a child
process, and prints each child's peak RSS (from ``wait4``).  Because pre-training
memory-maps the dataset, the two peaks should match; the goal at size=base is <= 3 GiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path) -> int:
    """Run main.py with ``args``; return the child's peak RSS in bytes."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), f"hydra.run.dir={cwd}/run", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"main.py {' '.join(args)} failed:\n{proc.stderr.read().decode()}")
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--times", type=int, default=10)
    args = parser.parse_args()

    text = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8")
    print(f"size={args.size} batch={args.batch} seq={args.seq} steps={args.steps}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for times in (1, args.times):
            corpus = work / f"corpus_x{times}.txt"
            corpus.write_text(text * times, encoding="utf-8")
            data = work / f"data_x{times}"
            run(["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={data}",
                 f"preprocess.seq_length={args.seq}", "preprocess.full_sentences=true"], work)
            dataset_mb = sum(f.stat().st_size for f in data.iterdir()) / 2**20
            peak = run(["stage=pretrain", f"size={args.size}", f"pretrain.dataset_path={data}",
                        f"pretrain.batch_size={args.batch}", f"pretrain.total_steps={args.steps}",
                        f"output_model_path={work}/model_x{times}"], work)
            print(f"  corpus x{times:<3} ({corpus.stat().st_size / 2**20:6.1f} MiB text, dataset {dataset_mb:6.1f} MiB): "
                  f"peak RSS {peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
