"""Pre-training throughput: uer vs transformers ``BertForMaskedLM``, same config, rows and batches, one process.

    python bench/pretrain_speed.py --size tiny
    python bench/pretrain_speed.py --size base --steps 4
    python bench/pretrain_speed.py --size base --device cuda --batch 32 --steps 30 --precisions bf16  # bench/gpu.sh
    python bench/pretrain_speed.py --size tiny --precisions fp32 --warmup 3 --compile   # hardware.compile=true

uer trains the model ``python main.py stage=pretrain size=SIZE`` builds (BERT, MLM target),
through its Trainer; transformers trains ``BertForMaskedLM`` of the same size as a competent
user would (SDPA attention, fused AdamW, clipping, padding per batch: bench/peers.py).
Both see the same rows in the same batches:

1. full-length rows: every row ``--seq`` tokens, as ``preprocess.full_sentences=true`` gives;
2. real reviews: corpora/book_review.txt one review per row (about 43 tokens), batched by
   length as stage=pretrain does by default (``pretrain.length_bucketing``; transformers'
   ``group_by_length`` groups the same way), each side padding a batch to its longest row.

Masks: uer's come from its preprocess; transformers' from ``DataCollatorForLanguageModeling``
over the same rows (the same 15%).  Batches are made before timing; the data pipeline has
its own bench (bench/data_pipeline.py).  For every precision in ``--precisions`` both sides
run; all steps alternate batch by batch, so a busy machine slows every variant alike.

Printed, and recorded with ``--json``: non-padding tokens/s of each; uer / transformers
and bf16 / fp32; uer's model FLOP/s (the step's matmul FLOPs / its time) as a fraction of
this machine's matmul rate in the same precision, measured between the rounds; on CUDA
also as a fraction of ``--peak-tflops`` (MFU).

``--compile`` runs each side eager and under ``torch.compile`` (inductor, as ``hardware.compile=true``
trains; the transformers model compiled the same way: bench/compiling.py) and reports, instead of the
above, compiled uer vs compiled transformers, each side's compiled vs eager rate, and each side's compile
time (its untimed steps less as many timed ones: the first ``--warmup`` and any round where a compiled
side recompiled, untimed for every variant; never in a rate) with the steps it takes to pay back.

Like main.py, the script restarts itself once with uer's glibc malloc settings
(uer/malloc_tuning.py; ``UER_MALLOC_TUNING=0`` keeps glibc's defaults); both sides run under them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer import malloc_tuning  # noqa: E402

malloc_tuning.restart_with_tuned_malloc(__file__)

import torch  # noqa: E402

import common  # noqa: E402  (bench/common.py)
import compiling  # noqa: E402
import peers  # noqa: E402
import results  # noqa: E402
from uer.data.build import build_pretrain_dataset  # noqa: E402
from uer.data.pretrain_dataset import PretrainDataset  # noqa: E402
from uer.data.sampler import EpochSampler  # noqa: E402
from uer.models import build_model  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402
from uer.training.process import compiled  # noqa: E402

DATASETS = {"full": "full-length rows", "reviews": "real reviews (non-padding tokens)"}
GOALS = {("base", "full", "fp32"): 1.15}  # uer / transformers, CPU
FLOP_GOALS = {("base", "fp32"): 0.9, ("base", "bf16"): 0.85}  # model FLOP/s / measured matmul, CPU


def build_dataset(tokenizer, lines: list[str], seq: int, full: bool, work: Path) -> PretrainDataset:
    work.mkdir(parents=True)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = work / "dataset"
    build_pretrain_dataset(corpus, path, tokenizer, "mlm", seq_length=seq, full_sentences=full,
                           tokenizer_cfg=tokenizer.identity())
    return PretrainDataset(path)


def batch_pairs(dataset: PretrainDataset, collator, batch: int, count: int, seed: int) -> list[tuple[dict, dict]]:
    """(uer batch, transformers batch) pairs of the same rows, in stage=pretrain's length-bucketed order."""
    sampler = EpochSampler(len(dataset), batch, seed, lengths=dataset.lengths())
    pairs = []
    for _ in range(count):
        indices, epoch = sampler.next_indices()
        ours = dataset.batch(indices, epoch, seed)
        rows = ours["src"].clone().view(-1)
        rows[ours["mlm_positions"]] = ours["mlm_labels"]  # the rows before masking
        rows = rows.view(ours["src"].shape)
        pairs.append((ours, collator([{"input_ids": row[row != 0].tolist()} for row in rows])))
    return pairs


def time_variants(cfg, size: dict, vocab_size: int, precisions, pairs, warmup: int, device: torch.device,
                  compile_: bool = False):
    """Every step's seconds of each (side, precision) (the first ``warmup`` untimed), and matmul rates sampled
    between the timed rounds; with ``compile_`` each side also runs compiled ("uer compiled", ...).

    All models live only here: the next dataset's models start from free memory."""
    steps = {}
    for precision in precisions:
        for suffix in ("", compiling.COMPILED) if compile_ else ("",):
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.embedding, cfg.encoder, cfg.target, vocab_size).to(device)
            trainer = common.trainer(compiled(model) if suffix else model, cfg.pretrain.learning_rate, device=device,
                                     precision=precision)
            steps[("uer" + suffix, precision)] = lambda pair, t=trainer: t.train_step([pair[0]])
            peer = peers.Step(peers.masked_lm(size, vocab_size), cfg.pretrain.learning_rate, device=device,
                              precision=precision, compile_model=bool(suffix))
            steps[("transformers" + suffix, precision)] = lambda pair, s=peer: s(pair[1])
    times = {key: [] for key in steps}
    rates = common.MatmulRates(precisions, device)
    for round_, pair in enumerate(pairs):
        for key, step in steps.items():
            times[key].append(common.timed(device, lambda: step(pair)))
        if round_ >= warmup:
            rates.sample()
    return times, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each variant, after --warmup")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--datasets", default="full,reviews", help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--rows", type=int, default=4000, help="corpus lines read")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak (spec sheet), for MFU; e.g. 989 for an H100/H200 SXM")
    parser.add_argument("--compile", action="store_true",
                        help="also train each side under torch.compile (inductor, a cold cache), as "
                             "hardware.compile=true does, and report compiled vs compiled, compiled vs eager and "
                             "the compile times (recorded as pretrain_SIZE_compile)")
    results.add_arguments(parser)
    args = parser.parse_args()
    if args.compile:
        compiling.cold_inductor_cache()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions = args.precisions.split(",")

    cfg = common.compose(["stage=pretrain", f"size={args.size}", "target=mlm"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    hf_tokenizer = peers.tokenizer(str(common.VOCAB))
    size, vocab_size = dict(cfg.model), len(tokenizer.vocab)
    lines = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:args.rows]
    threads = f"{torch.get_num_threads()} thread" + ("" if torch.get_num_threads() == 1 else "s")
    compiled_title = f", `hardware.compile=true` (inductor, {threads}, cold cache) vs eager" if args.compile else ""
    recorder = results.Recorder(
        f"pretrain_{args.size}" + ("" if device.type == "cpu" else f"_{device.type}") + ("_compile" * args.compile),
        f"pre-training, `size={args.size}`, batch {args.batch}, seq {args.seq}, {device.type}{compiled_title}",
        "transformers `BertForMaskedLM` (SDPA, fused AdamW, per-batch padding; same rows and batches)"
        + (", `torch.compile`d the same way, and each side eager" if args.compile else ""),
        args.json, device=device.type, provisional=args.provisional)
    print(f"size={args.size} batch={args.batch} seq={args.seq} device={device} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}; {malloc_tuning.describe()}")

    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    for name in args.datasets.split(","):
        dataset = build_dataset(tokenizer, lines, args.seq, name == "full", work / name)
        pairs = batch_pairs(dataset, peers.mlm_collator(hf_tokenizer), args.batch, args.warmup + args.steps, cfg.seed)
        times, rates = time_variants(cfg, size, vocab_size, precisions, pairs, args.warmup, device, args.compile)
        rounds = compiling.timed_rounds(times, args.warmup) if args.compile else range(args.warmup, len(pairs))
        seconds = {key: sum(values[i] for i in rounds) for key, values in times.items()}
        timed = [pairs[i][0] for i in rounds]
        tokens = sum(int((batch["src"] != 0).sum()) for batch in timed)
        if args.compile:
            print(f"{DATASETS[name]}, {len(rounds)} timed steps of {args.batch} rows each:")
            for precision in precisions:
                compiling.add_figures(recorder, f"{DATASETS[name]}, {precision}", "tokens/s",
                                      {side: tokens / s for (side, p), s in seconds.items() if p == precision},
                                      {side: t for (side, p), t in times.items() if p == precision}, rounds)
            continue
        flops = sum(common.transformer_flops(size, *b["src"].shape, len(b["mlm_positions"]), vocab_size) for b in timed)
        report(recorder, args, name, precisions, {k: tokens / s for k, s in seconds.items()},
               {p: flops / seconds[("uer", p)] for p in precisions}, rates)
        if device.type != "cpu":  # to set beside bench/data_pipeline.py's batches per CPU core
            for precision in precisions:
                ours, theirs = (args.steps / seconds[(side, precision)] for side in ("uer", "transformers"))
                figure = recorder.add(f"{DATASETS[name]}, {precision}", ours, "steps/s", "transformers", theirs)
                print(f"  uer steps/s, {precision}: {figure.value:.1f}")
    recorder.save()


def report(recorder, args, dataset: str, precisions, rate: dict, achieved: dict, rates) -> None:
    label, cpu = DATASETS[dataset], recorder.device == "cpu"
    print(f"{label}, {args.steps} timed steps of {args.batch} rows each:")
    for (side, precision), value in rate.items():
        print(f"  {side:<13} {precision}  {value:10.0f} tokens/s")
    for precision in precisions:
        ours, theirs = rate[("uer", precision)], rate[("transformers", precision)]
        recorder.add(f"{label}, {precision}", ours, "tokens/s", "transformers", theirs,
                     goal=GOALS.get((args.size, dataset, precision)) if cpu else None)
        print(f"  uer / transformers, {precision}: {ours / theirs:.2f}x")
    if "fp32" in precisions and "bf16" in precisions:
        ratio = recorder.add(f"{label}, bf16 autocast", rate[("uer", "bf16")], "tokens/s", "our fp32",
                             rate[("uer", "fp32")]).ratio
        print(f"  uer bf16 / fp32: {ratio:.2f}x (transformers: "
              f"{rate[('transformers', 'bf16')] / rate[('transformers', 'fp32')]:.2f}x)")
    if dataset != "full":
        return
    for precision in precisions:
        peak = rates.median(precision)
        figure = recorder.add(f"model FLOP/s, {precision}", achieved[precision] / 1e9, "GFLOP/s",
                              f"measured {precision} matmul", peak / 1e9, fraction=True,
                              goal=FLOP_GOALS.get((args.size, precision)) if cpu else None)
        print(f"  uer model FLOP/s, {precision}: {figure.value:.1f} G of measured {precision} matmul "
              f"{figure.reference_value:.1f} G = {figure.ratio:.2f}")
        if args.peak_tflops and precision == "bf16":
            mfu = recorder.add("MFU, bf16", achieved[precision] / 1e12, "TFLOP/s", "bf16 dense peak (spec)",
                               args.peak_tflops, fraction=True)
            print(f"  MFU: {mfu.value:.1f} TFLOP/s of {args.peak_tflops:.0f} = {mfu.ratio:.2f}")


if __name__ == "__main__":
    main()
