"""Pre-training throughput with 1 vs 2 CPU processes (gloo DDP) and the scaling efficiency.

    python bench/distributed_scaling.py                  # size=tiny, batch 16 per process, 40 steps

Runs ``main.py stage=pretrain`` three times on the same MLM dataset: one process with one
thread (the reference), two processes with one thread each (``hardware.nproc_per_node=2``),
and one process with two threads (what the same cores give without DDP).  Throughput is the
mean ``tokens_per_s`` of the reports after the first (warm-up) one, from ``metrics.jsonl``.
Efficiency = (2-process tokens/s) / (2 x 1-process tokens/s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import results  # noqa: E402  (bench/results.py)


def main_py(args: list[str], run_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"main.py failed:\n{proc.stderr[-3000:]}")


def throughput(run_dir: Path) -> float:
    reports = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    return sum(r["tokens_per_s"] for r in reports) / len(reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch", type=int, default=16, help="per process")
    parser.add_argument("--steps", type=int, default=40)
    results.add_arguments(parser)
    args = parser.parse_args()
    recorder = results.Recorder("distributed", f"data parallel pre-training, `size={args.size}`, batch {args.batch} "
                                f"per process, {args.steps} steps", "1 process x 1 thread", args.json,
                                provisional=args.provisional, threads="1 or 2 (per run)")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = work / "data"
        main_py(["stage=preprocess", "preprocess.corpus_path=corpora/book_review.txt", f"preprocess.dataset_path={data}",
                 "preprocess.full_sentences=true"], work / "pre")
        common = ["stage=pretrain", f"size={args.size}", f"pretrain.dataset_path={data}",
                  f"pretrain.batch_size={args.batch}", f"pretrain.total_steps={args.steps}",
                  f"pretrain.report_steps={max(1, args.steps // 5)}"]
        runs = {"1 process x 1 thread": ["hardware.num_threads=1"],
                "2 processes x 1 thread": ["hardware.num_threads=1", "hardware.nproc_per_node=2"],
                "1 process x 2 threads": ["hardware.num_threads=2"]}
        rates = {}
        for i, (name, extra) in enumerate(runs.items()):
            run_dir = work / f"run{i}"
            main_py([*common, *extra, f"output_model_path={work / f'model{i}'}"], run_dir)
            rates[name] = throughput(run_dir)
            print(f"  {name:<24} {rates[name]:10.0f} tokens/s")
        one, two = rates["1 process x 1 thread"], rates["2 processes x 1 thread"]
        print(f"scaling efficiency, 2 processes vs 1: {two / (2 * one):.2f} "
              f"(speed-up {two / one:.2f}x; 1 process x 2 threads: {rates['1 process x 2 threads'] / one:.2f}x)")
        recorder.add("2 processes x 1 thread (gloo)", two, "tokens/s", "1 process x 1 thread", one,
                     note=f"scaling efficiency {two / (2 * one):.2f}")
        recorder.add("1 process x 2 threads", rates["1 process x 2 threads"], "tokens/s", "1 process x 1 thread", one)
    recorder.save()


if __name__ == "__main__":
    main()
