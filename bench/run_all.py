"""Run the CPU benchmark set into bench/results.json and regenerate the Benchmarks table (docs/benchmarks.md) from it.

    python bench/run_all.py                        # everything; prints each bench's time
    python bench/run_all.py --only pretrain_base,finetune_tiny
    python bench/run_all.py --list
    python bench/run_all.py --quick --json /tmp/check.json   # every script end to end with tiny settings

Run it on a machine with nothing else running: the benches alternate their variants step
by step, so load slows every variant alike, but a busy machine still widens the noise.
``--provisional`` marks the numbers as measured on a busy machine (the table says so).
Each bench is a separate process (its own threads, allocator settings and imports), run
in the order of bench/suite.py; a failing bench stops the set.  A full run starts the results file
afresh (keeping GPU entries written by bench/gpu.sh); ``--only`` replaces just those benches.
``--quick`` shrinks every bench to check that the scripts run; it never writes
bench/results.json or docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import results  # bench/results.py
from suite import SUITE

ROOT = results.ROOT



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated benches: {', '.join(SUITE)}")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the scripts (needs --json)")
    parser.add_argument("--json", default=str(results.RESULTS), help="results file (default bench/results.json)")
    parser.add_argument("--provisional", action="store_true", help="mark the numbers as measured on a busy machine")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SUITE)
    unknown = [name for name in names if name not in SUITE]
    if unknown:
        raise SystemExit(f"unknown bench {unknown[0]!r}; choose from: {', '.join(SUITE)}")
    path = Path(args.json).resolve()
    official = path == results.RESULTS.resolve()
    if args.quick and official:
        raise SystemExit("--quick numbers are not measurements: give --json a path other than bench/results.json")
    commands = {name: ["bench/" + SUITE[name][args.quick][0], *SUITE[name][args.quick][1:]] for name in names}
    if args.list:
        for name, command in commands.items():
            print(f"{name:<17} python {' '.join(command)}")
        return

    before = results.load(path)["benches"] if path.exists() else {}  # a file it cannot merge into: before any bench
    if not args.only:  # a full run starts afresh; GPU entries (bench/gpu.sh) stay
        kept = {k: v for k, v in before.items() if v["device"] != "cpu"}
        results.save({"schema": results.SCHEMA, "benches": kept}, path)
    started = time.perf_counter()
    for name, command in commands.items():
        print(f"=== {name}: python {' '.join(command)}", flush=True)
        began = time.perf_counter()
        extra = ["--json", str(path), *(["--provisional"] if args.provisional or args.quick else [])]
        proc = subprocess.run([sys.executable, *command, *extra], cwd=ROOT)
        if proc.returncode:
            raise SystemExit(f"{name} failed (exit {proc.returncode}); the results of the benches before it are in "
                             f"{path}")
        if name not in results.load(path)["benches"]:
            raise SystemExit(f"{name} ran but recorded nothing under its name in {path}")
        print(f"=== {name}: {time.perf_counter() - began:.0f} s", flush=True)
    print(f"all {len(commands)} benches in {(time.perf_counter() - started) / 60:.1f} minutes")
    if official:
        results.write_table()


if __name__ == "__main__":
    main()
