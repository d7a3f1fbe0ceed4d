"""Can one CPU core feed a GPU?  The pre-training batch pipeline alone, against the step rate a GPU would ask for.

    python bench/data_pipeline.py
    python bench/data_pipeline.py --batch 32 --seqs 128,512 --batches 300

What stage=pretrain does for every batch before the model sees it: the sampler's next
indices (length bucketing on, the default) and ``PretrainDataset.batch`` (read the
memory-mapped rows, draw dynamic masks per instance, pad to the longest row), on one
thread, for datasets built from corpora/book_review.txt with ``dynamic_masking=true``:
full-length rows (``full_sentences=true``, every row ``seq`` tokens: the most masking
work per batch) and, at 128, one review per row.  Printed, and recorded with
``--json``: batches/s per core (CPU time of this process, so other load on the machine
counts less); then with ``pretrain.data_workers=--workers`` (uer/data/prefetch.py): the
batches/s the workers deliver (wall clock: bounded by the machine's free cores) and the
CPU the training process still spends per batch.

No GPU is measured here.  The step rate it is compared with is an estimate, shown with
its arithmetic: the matmul FLOPs of a ``size=base`` MLM step (bench/common.py's
``transformer_flops``) at ``--mfu`` of the ``--peak-tflops`` dense bf16 peak of an
H100/H200 SXM (989 TFLOP/s on the spec sheets).  Cores needed = that step rate / our
batches/s per core.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import common  # noqa: E402  (bench/common.py)
import results  # noqa: E402
from uer.data.build import build_pretrain_dataset  # noqa: E402
from uer.data.prefetch import BatchSource  # noqa: E402
from uer.data.pretrain_dataset import PretrainDataset  # noqa: E402
from uer.data.sampler import EpochSampler  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402


def rates(dataset: PretrainDataset, batch: int, count: int, workers: int, seed: int = 7) -> tuple[float, float, float]:
    """Batches per wall second and per CPU second of this (the training) process, and mean non-padding
    tokens per batch, of ``BatchSource.next_batch`` (what stage=pretrain calls) with ``workers``."""
    source = BatchSource(dataset, EpochSampler(len(dataset), batch, seed, lengths=dataset.lengths()), seed,
                         workers=workers)
    try:
        source.next_batch()  # workers started, first batches on their way
        tokens = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            tokens += int((source.next_batch()["src"] != 0).sum())
        return count / (time.perf_counter() - wall), count / (time.process_time() - cpu), tokens / count
    finally:
        source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seqs", default="128,512")
    parser.add_argument("--batches", type=int, default=200, help="batches timed per dataset")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak (spec), TFLOP/s")
    parser.add_argument("--mfu", type=float, default=0.5, help="assumed fraction of that peak a base step reaches")
    parser.add_argument("--workers", type=int, default=2, help="also measure pretrain.data_workers=N (0: skip)")
    results.add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)

    cfg = common.compose(["stage=pretrain", "size=base", "target=mlm"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    size, vocab_size = dict(cfg.model), len(tokenizer.vocab)
    recorder = results.Recorder(
        "data_pipeline", f"pre-training batch pipeline alone, dynamic masking, bucketing, batch {args.batch}, one core",
        f"a GPU's `size=base` bf16 step rate: estimated, {args.mfu:.0%} of {args.peak_tflops:.0f} TFLOP/s "
        "(H100/H200 SXM spec)", args.json, provisional=args.provisional)
    corpus = ROOT / "corpora" / "book_review.txt"
    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    variants = [(int(seq), True) for seq in args.seqs.split(",")] + [(128, False)]
    for seq, full in variants:
        path = work / f"{seq}_{'full' if full else 'reviews'}"
        build_pretrain_dataset(corpus, path, tokenizer, "mlm", seq_length=seq, full_sentences=full,
                               dynamic_masking=True, tokenizer_cfg=tokenizer.identity())
        dataset = PretrainDataset(path)
        _, rate, tokens = rates(dataset, args.batch, args.batches, 0)
        rows = "full-length rows" if full else "one review per row"
        flops = common.transformer_flops(size, args.batch, round(tokens / args.batch), round(0.15 * tokens),
                                         vocab_size)
        need = args.peak_tflops * 1e12 * args.mfu / flops
        print(f"seq {seq}, {rows}: {rate:8.1f} batches per CPU second ({tokens:,.0f} tokens a batch); a GPU step "
              f"of {flops / 1e12:.2f} TFLOP at {args.mfu:.0%} of {args.peak_tflops:.0f} TFLOP/s = {need:.0f} steps/s "
              f"-> {math.ceil(need / rate)} core(s) per GPU")
        recorder.add(f"seq {seq}, {rows}", rate, "batches/s per core", "GPU steps/s (estimate)", need,
                     note=f"{flops / 1e12:.2f} TFLOP a step; {math.ceil(need / rate)} core(s) per GPU")
        if args.workers:
            wall, cpu, _ = rates(dataset, args.batch, args.batches, args.workers)
            print(f"  pretrain.data_workers={args.workers}: {wall:8.1f} batches/s delivered; the training process "
                  f"spends {1e3 / cpu:.2f} ms of CPU per batch (in the loop: {1e3 / rate:.2f} ms)")
            recorder.add(f"seq {seq}, {rows}, `data_workers={args.workers}`", wall, "batches/s delivered",
                         "GPU steps/s (estimate)", need, note=f"{1e3 / cpu:.2f} ms of the training process's CPU a "
                         f"batch, {1e3 / rate:.2f} ms in the loop")
    recorder.save()


if __name__ == "__main__":
    main()
