"""Fine-tuning and inference throughput: uer's classifier vs transformers ``BertForSequenceClassification``.

    python bench/finetune_speed.py --size tiny                  # 2,000 Douban rows, batch 32, one thread
    python bench/finetune_speed.py --size base --rows 512 --threads 2
    python bench/finetune_speed.py --size base --device cuda --precision bf16 --rows 8000 --batch 64  # bench/gpu.sh
    python bench/finetune_speed.py --size tiny --rows 960 --warmup 4 --compile  # hardware.compile=true vs eager

uer: the model, batches and Trainer ``python main.py stage=finetune task=classifier
size=SIZE`` uses (``finetune.length_bucketing``, on by default, batches rows of similar
length); inference is ``uer.tasks.predict``, the function ``stage=infer`` calls, with
``infer.batch_size``.  transformers, set up as in bench/peers.py (SDPA, fused AdamW,
clipping), trains twice over, from the same rows (tokenized once, by uer; its tokenizer
gives BERT's ids): with ``DataCollatorWithPadding`` in random order (the Trainer's
default), and in ``group_by_length=True`` order.  Its inference is what
``Trainer.predict`` does: rows in file order, ``DataCollatorWithPadding``, no gradients.

Training: one epoch over the first ``--rows`` rows of train.tsv, the steps of the three
alternating (the first ``--warmup`` untimed); the time counts collating each batch and
the step.  Inference: ``--repeats`` passes each over the first ``--rows`` rows of
test.tsv, alternating.  Printed, and recorded with ``--json``: examples/s and ratios, and
uer's training model FLOP/s (matmul FLOPs of its padded batches, the classifier head
included, by pre-training's formula ``common.transformer_flops``, over the time) against
this machine's matmul rate: how much room there is left.

``--compile``: training only, each side eager and under ``torch.compile`` as ``hardware.compile=true``
trains (bench/compiling.py; transformers in ``group_by_length`` order), reporting compiled vs compiled,
compiled vs eager, and the compile times apart from the rates.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (bench/common.py)
import compiling  # noqa: E402
import peers  # noqa: E402
import results  # noqa: E402
from uer.runtime import autocast  # noqa: E402
from uer.finetuning import setup as finetune  # noqa: E402
from uer.finetuning.batches import SampledBatches  # noqa: E402
from uer.tasks import predict  # noqa: E402
from uer.training.process import compiled  # noqa: E402

DOUBAN = ROOT / "datasets" / "douban_book_review"
GOALS = {"training": 1.3, "inference": 1.5}  # uer / transformers' best, CPU
PER_BATCH, GROUPED = "transformers, per-batch padding", "transformers, group_by_length"


def head_rows(path: Path, rows: int, work: Path) -> Path:
    out = work / path.name
    out.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:rows + 1]) + "\n", encoding="utf-8")
    return out


def features(examples) -> list[dict]:
    """transformers' inputs for uer's tokenized rows (one segment: token types 0)."""
    return [{"input_ids": e.src, "attention_mask": [1] * len(e.src), "labels": max(e.label, 0)} for e in examples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--rows", type=int, default=2000, help="rows of train.tsv, and of test.tsv for inference")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128, help="finetune.seq_length")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps of each")
    parser.add_argument("--repeats", type=int, default=2, help="inference passes of each")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action="store_true",
                        help="train each side eager and under torch.compile (inductor, a cold cache), as "
                             "hardware.compile=true does, transformers in group_by_length order; report compiled vs "
                             "compiled, compiled vs eager and the compile times, no inference (recorded as "
                             "finetune_SIZE_compile)")
    results.add_arguments(parser)
    args = parser.parse_args()
    if args.compile:
        compiling.cold_inductor_cache()

    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    train_path, test_path = head_rows(DOUBAN / "train.tsv", args.rows, work), head_rows(DOUBAN / "test.tsv", args.rows,
                                                                                        work)
    cfg = common.compose(["stage=finetune", "task=classifier", f"size={args.size}", f"finetune.seq_length={args.seq}",
                          f"finetune.batch_size={args.batch}", f"finetune.train_path={train_path}",
                          f"finetune.dev_path={train_path}", f"hardware.num_threads={args.threads}",
                          f"hardware.device={args.device}", f"hardware.precision={args.precision}"])
    setup = finetune.prepare(cfg)
    task, device = setup.task, setup.device
    train = task.read(train_path, split="train", labels_num=None, skip_bad_rows=False)
    test = task.read(test_path, split="infer", labels_num=None, skip_bad_rows=False)
    labels_num = task.labels_num_from(train)
    hf_tokenizer = peers.tokenizer(str(common.VOCAB))
    collate = peers.padding_collator(hf_tokenizer)
    threads = f"{torch.get_num_threads()} thread" + ("" if torch.get_num_threads() == 1 else "s")
    recorder = results.Recorder(
        f"finetune_{args.size}" + ("" if device.type == "cpu" else f"_{device.type}") + ("_compile" * args.compile),
        (f"fine-tuning, `size={args.size}`, {args.rows:,} Douban rows, batch {args.batch}, {args.precision}, "
         f"{device.type}, `hardware.compile=true` (inductor, {threads}, cold cache) vs eager" if args.compile else
         f"fine-tuning and inference, `size={args.size}`, {args.rows:,} Douban rows, batch {args.batch}, "
         f"{args.precision}, {device.type}"),
        "transformers `BertForSequenceClassification` (SDPA, fused AdamW, `DataCollatorWithPadding`; "
        + ("`group_by_length` order), `torch.compile`d the same way, and each side eager" if args.compile else
           "random order and `group_by_length` order)"), args.json, device=device.type, provisional=args.provisional)

    ours_batches = SampledBatches(task, train.examples, args.batch, cfg.seed, source=str(train_path),
                                  length_bucketing=cfg.finetune.length_bucketing)
    steps = ours_batches.batches_per_epoch
    if steps <= args.warmup:
        raise SystemExit(f"--rows {args.rows} gives {steps} batches of {args.batch}; need more than --warmup")
    rows = features(train.examples)
    shuffled = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(shuffled)
    grouped = peers.length_grouped_batches([len(r["input_ids"]) for r in rows], args.batch, cfg.seed)[:steps]
    orders = ({"transformers": grouped} if args.compile else
              {PER_BATCH: [shuffled[i * args.batch:(i + 1) * args.batch] for i in range(steps)], GROUPED: grouped})

    ours_model = finetune.new_model(setup, labels_num)
    size = dict(cfg.model)
    shapes = []  # of uer's batches, for its FLOPs
    variants = {}  # name -> one training step on the batch of step i
    theirs = {}
    for suffix in ("", compiling.COMPILED) if args.compile else ("",):
        model = finetune.new_model(setup, labels_num) if suffix else ours_model
        trainer = common.trainer(compiled(model) if suffix else model, cfg.finetune.learning_rate, device=device,
                                 precision=args.precision, steps=steps)
        batches = ours_batches if not suffix else SampledBatches(  # the same seed: the same batches
            task, train.examples, args.batch, cfg.seed, source=str(train_path),
            length_bucketing=cfg.finetune.length_bucketing)
        variants["uer" + suffix] = lambda i, t=trainer, b=batches, record=not suffix: ours_step(t, b, shapes, record)
        for name, order in orders.items():
            torch.manual_seed(cfg.seed)
            hf_model = peers.sequence_classifier(size, len(setup.tokenizer.vocab), labels_num)
            peer = theirs[name + suffix] = peers.Step(hf_model, cfg.finetune.learning_rate, device=device,
                                                      precision=args.precision, compile_model=bool(suffix))
            variants[name + suffix] = lambda i, s=peer, o=order: s(collate([rows[j] for j in o[i]]))
    print(f"{len(train)} training rows, {len(test)} test rows of {DOUBAN}, size={args.size} batch={args.batch} "
          f"device={device} precision={args.precision} threads={torch.get_num_threads()} torch={torch.__version__}")

    times = {name: [] for name in variants}
    rates = common.MatmulRates([args.precision], device)
    for step in range(steps):
        for name, variant in variants.items():
            times[name].append(common.timed(device, lambda: variant(step)))
        if step >= args.warmup and (step - args.warmup) % 5 == 0:
            rates.sample()
    timed = compiling.timed_rounds(times, args.warmup) if args.compile else range(args.warmup, steps)
    seconds = {name: sum(values[i] for i in timed) for name, values in times.items()}
    # The head scores one pooled vector a row (a long row's windows pool into one).
    flops = sum(common.transformer_flops(size, batch_rows, length, batch_rows, labels_num)
                for batch_rows, length in (shapes[i] for i in timed))
    train_rate = {name: len(timed) * args.batch / value for name, value in seconds.items()}
    print(f"training, {len(timed)} timed steps of {args.batch} rows each:")
    if args.compile:
        compiling.add_figures(recorder, f"training, {args.precision}", "examples/s", train_rate, times, timed)
        recorder.save()
        return
    report(recorder, "training", train_rate, device.type == "cpu")
    achieved, peak = flops / seconds["uer"], rates.median(args.precision)
    figure = recorder.add(f"training model FLOP/s, {args.precision}", achieved / 1e9, "GFLOP/s",
                          f"measured {args.precision} matmul", peak / 1e9, fraction=True)
    print(f"  uer model FLOP/s {figure.value:.1f} G of measured matmul {figure.reference_value:.1f} G "
          f"= {figure.ratio:.2f}")

    test_rows = [{k: v for k, v in row.items() if k != "labels"} for row in features(test.examples)]
    infer_batch = common.compose(["stage=infer"]).infer.batch_size  # stage=infer's default
    infer_s = {"uer": 0.0, "transformers": 0.0}
    hf_model = theirs[GROUPED].model.eval()
    for _ in range(args.repeats):
        infer_s["uer"] += common.timed(device, lambda: predict(ours_model, task, test, batch_size=infer_batch,
                                                               device=device, precision=args.precision))
        infer_s["transformers"] += common.timed(device, lambda: hf_predict(hf_model, collate, test_rows,
                                                                           infer_batch, device,
                                                                           args.precision))
    print(f"inference, {args.repeats} passes over {len(test)} rows, batch {infer_batch}:")
    report(recorder, "inference", {name: args.repeats * len(test) / value for name, value in infer_s.items()},
           device.type == "cpu")
    recorder.save()


def ours_step(trainer, batches: SampledBatches, shapes: list, record: bool) -> None:
    """uer's training step on its next batch (collated inside the time, as the transformers side's)."""
    batch = batches.next_batch()
    if record:
        shapes.append(batch["src"].shape)
    trainer.train_step([batch])


def hf_predict(model, collate, rows: list[dict], batch_size: int, device: torch.device, precision: str) -> list:
    """Logits of ``rows`` in file order, batch by batch, as ``Trainer.predict`` computes them."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            inputs = {key: value.to(device) for key, value in collate(rows[start:start + batch_size]).items()}
            with autocast(device, precision):
                outputs.append(model(**inputs).logits.float().cpu())
    return outputs


def report(recorder, what: str, rates: dict, cpu: bool) -> None:
    for name, rate in rates.items():
        print(f"  {name:<34} {rate:9.1f} examples/s")
    ours = rates["uer"]
    references = [name for name in rates if name != "uer"]
    best = max(references, key=rates.get)
    for name in references:
        figure = recorder.add(what, ours, "examples/s", name, rates[name],
                              goal=GOALS[what] if cpu and name == best else None)
        print(f"  uer / {name}: {figure.ratio:.2f}x")


if __name__ == "__main__":
    main()
