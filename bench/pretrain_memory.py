"""Peak resident memory of ``stage=pretrain`` and how it scales with corpus size.

    python bench/pretrain_memory.py                 # size=base, batch 16, seq 128, corpus x1 and x10
    python bench/pretrain_memory.py --variants      # also the memory savers, on corpus x1

Builds an MLM dataset from corpora/book_review.txt and from the same corpus repeated
``--times`` times, runs a few pre-training steps on each through ``main.py`` in a child
process, and prints each child's peak RSS (from ``wait4``).  Because pre-training
memory-maps the dataset, the two peaks should match; the goal at size=base is <= 3 GiB.

``--variants`` also runs, on both corpora, the ways to trade speed for memory: activation
checkpointing, bf16 autocast, both; and glibc malloc at its defaults (``UER_MALLOC_TUNING=0``,
see uer/malloc_tuning.py), to show what main.py's malloc settings save.  Each line gives
the last step's tokens/s beside the peak.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import results  # noqa: E402  (bench/results.py)

GOAL_GIB = 3.0  # at size=base, fp32 defaults

VARIANTS = {
    "hardware.activation_checkpointing=true": (["hardware.activation_checkpointing=true"], {}),
    "hardware.precision=bf16": (["hardware.precision=bf16"], {}),
    "bf16 + activation checkpointing": (["hardware.precision=bf16", "hardware.activation_checkpointing=true"], {}),
    "UER_MALLOC_TUNING=0 (glibc malloc defaults)": ([], {"UER_MALLOC_TUNING": "0", "GLIBC_TUNABLES": ""}),
}
TOKENS_PER_S = re.compile(r"\| (\d+) tokens/s")


def run(args: list[str], cwd: Path, env: dict | None = None) -> tuple[int, float | None]:
    """Run main.py with ``args``; the child's peak RSS in bytes and its last tokens/s report."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), f"hydra.run.dir={cwd}/run", *args], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        log.seek(0)
        output = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"main.py {' '.join(args)} failed:\n{output}")
    rates = TOKENS_PER_S.findall(output)
    return usage.ru_maxrss * 1024, float(rates[-1]) if rates else None  # ru_maxrss: kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--variants", action="store_true", help="also measure the memory-saving settings")
    results.add_arguments(parser)
    args = parser.parse_args()
    recorder = results.Recorder("pretrain_memory", f"peak memory of `stage=pretrain`, `size={args.size}`, batch "
                                f"{args.batch}, seq {args.seq}, {args.steps} steps",
                                "fp32 defaults on the same corpus; the x1 corpus for the x10 one", args.json,
                                provisional=args.provisional)
    defaults = {}

    text = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8")
    print(f"size={args.size} batch={args.batch} seq={args.seq} steps={args.steps}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)

        def pretrain(data: Path, name: str, extra: list[str] = (), env: dict | None = None) -> tuple[float, str]:
            peak, rate = run(["stage=pretrain", f"size={args.size}", f"pretrain.dataset_path={data}",
                              f"pretrain.batch_size={args.batch}", f"pretrain.total_steps={args.steps}",
                              "pretrain.report_steps=1", f"output_model_path={work}/model_{name}", *extra], work, env)
            speed = f"{rate:.0f} tokens/s, last step" if rate is not None else "no tokens/s report"
            return peak / 2**30, speed

        datasets = {}
        for times in (1, args.times):
            corpus = work / f"corpus_x{times}.txt"
            corpus.write_text(text * times, encoding="utf-8")
            data = datasets[times] = work / f"data_x{times}"
            run(["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={data}",
                 f"preprocess.seq_length={args.seq}", "preprocess.full_sentences=true"], work)
            dataset_mb = sum(f.stat().st_size for f in data.iterdir()) / 2**20
            gib, speed = pretrain(data, f"x{times}")
            defaults[times] = gib
            print(f"  corpus x{times:<3} ({corpus.stat().st_size / 2**20:6.1f} MiB text, dataset {dataset_mb:6.1f} MiB): "
                  f"peak RSS {gib:.2f} GiB  ({speed})")
            reference = ("corpus x1", defaults[1]) if times > 1 else (None, None)
            recorder.add(f"fp32 defaults, corpus x{times}", gib, "GiB", *reference,
                         at_most=GOAL_GIB if args.size == "base" else None, note=speed)
        if args.variants:
            for number, (label, (extra, env)) in enumerate(VARIANTS.items()):
                for times, data in datasets.items():
                    gib, speed = pretrain(data, f"variant{number}_x{times}", extra, env)
                    print(f"  corpus x{times:<3} {label}: peak RSS {gib:.2f} GiB  ({speed})")
                    recorder.add(f"{label}, corpus x{times}", gib, "GiB", "fp32 defaults", defaults[times], note=speed)
    recorder.save()


if __name__ == "__main__":
    main()
