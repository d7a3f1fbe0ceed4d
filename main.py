"""The one entry point: compose conf/ into one config and run its stage (uer/cli.py).

    python main.py stage=preprocess target=mlm preprocess.corpus_path=corpora/book_review.txt
    python main.py stage=pretrain encoder=bert size=tiny target=mlm pretrain.total_steps=200
    python main.py task=classifier finetune.train_path=...      # task= implies stage=finetune
"""

import signal
import sys

STOPS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum, frame):
    """SIGTERM before the run starts ends as SIGINT does (Python's default would end the process without a word);
    uer.app installs the run's own handler once the run starts."""
    raise KeyboardInterrupt(signum)


def _import_main():
    """``uer.cli.main``, imported with SIGINT and SIGTERM held until the import is over: raised in the middle of
    a library's own import (torch imports numpy, sympy, ...), the interrupt can be swallowed by the library's
    fallbacks, leaving it half-imported and the run going on (seen: numpy without numpy.matrix, exit 1 later)."""
    held = []
    for signum in STOPS:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        from uer.cli import main
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _stop)
    if held:
        raise KeyboardInterrupt(held[0])
    return main


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    try:
        from uer.malloc_tuning import restart_with_tuned_malloc

        restart_with_tuned_malloc(__file__)  # before torch is loaded: glibc reads its malloc settings at start-up
        _import_main()()
    except KeyboardInterrupt as stop:  # while loading (torch takes seconds) or checking: a run stopped after starts
        # ends itself with its own line (uer.app)
        signum = next((arg for arg in stop.args if isinstance(arg, int)), signal.SIGINT)
        print(f"interrupted by {signal.Signals(signum).name} before the run started: nothing was written; run the "
              "command again", file=sys.stderr, flush=True)
        sys.exit(128 + signum)
