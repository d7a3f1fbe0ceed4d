"""Fine-tuning throughput: padding each batch to its own longest row (uer) vs to seq_length (the original).

    python bench/finetune_padding.py                      # 2,000 douban_book_review rows, size=tiny
    python bench/finetune_padding.py --rows 500 --batch 32 --threads 2

The same classifier is fine-tuned in one process, from the same initial weights
(``finetune.seq_length=--seq``, the library's reader, collate, Trainer and optimiser), as:

* ``padding to SEQ (original)``: the task's batches padded further to ``--seq`` tokens,
  as the original toolkit feeds every example;
* ``per-batch padding (uer)``: the same batches as the task collates them, padded to the
  batch's longest row;
* ``per-batch + length buckets``: ``SampledBatches(length_bucketing=True)``, rows of every
  50 batches regrouped by length (:mod:`uer.data.sampler`; other batches, same rows).

Steps of the variants alternate, so a busy machine slows all alike.  Printed: training
examples/s of each (after ``--warmup`` steps each) and ratios to the original, then the
same for inference over the rows in file order through ``uer.tasks.predict`` (what
dev/test evaluation and stage=infer run): with every batch padded to ``--seq``, with
``by_length=False`` (batches in file order) and as the stages call it (batched by
length, results restored to file order); ``--infer-rounds`` passes of each, alternating.
The padding to ``--seq`` is done on the collated tensors here, not by a library option.
``bench/infer_order.py`` times the whole stage=infer on a file against the same file
sorted by length.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.finetuning import setup as finetune  # noqa: E402
from uer.finetuning.batches import SampledBatches  # noqa: E402
from uer.tasks import predict  # noqa: E402

import common  # noqa: E402  (bench/common.py)
import results  # noqa: E402  (bench/results.py)
from timing import timed  # noqa: E402  (bench/timing.py)


def pad_to(batch: dict, width: int, pad_id: int) -> dict:
    """``batch`` with ``src`` (pad id) and ``seg`` (0) right-padded to ``width`` columns."""
    out = dict(batch)
    extra = width - batch["src"].size(1)
    if extra > 0:
        out["src"] = torch.nn.functional.pad(batch["src"], (0, extra), value=pad_id)
        out["seg"] = torch.nn.functional.pad(batch["seg"], (0, extra), value=0)
    return out


class PaddedPredict(torch.nn.Module):
    """``model`` whose ``predict`` gets every batch padded to ``width`` columns, as the original fed it."""

    def __init__(self, model: torch.nn.Module, width: int, pad_id: int):
        super().__init__()
        self.model, self.width, self.pad_id = model, width, pad_id

    def predict(self, batch: dict) -> torch.Tensor:
        return self.model.predict(pad_to(batch, self.width, self.pad_id))


def token_slots(lengths: list[int], batch: int) -> int:
    """Token positions that batches of ``batch`` consecutive rows, each padded to its longest, hold."""
    return sum(max(lengths[i:i + batch]) * len(lengths[i:i + batch]) for i in range(0, len(lengths), batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="training rows from the top of train.tsv")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128, help="finetune.seq_length, and the fixed padding width")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each variant")
    parser.add_argument("--infer-rounds", type=int, default=2, help="timed inference passes of each variant")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--data", default=str(ROOT / "datasets" / "douban_book_review" / "train.tsv"))
    results.add_arguments(parser)
    args = parser.parse_args()
    recorder = results.Recorder("finetune_padding", f"fine-tuning padding policy, `size={args.size}`, {args.rows:,} "
                                f"Douban rows, batch {args.batch}", f"the same model and rows padded to {args.seq} "
                                "(the original toolkit)", args.json, device=args.device, provisional=args.provisional)

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[:args.rows + 1]
    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    train_path = work / "train.tsv"
    train_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    cfg = common.compose([
        "stage=finetune", "task=classifier", f"size={args.size}", f"finetune.seq_length={args.seq}",
        f"finetune.batch_size={args.batch}", f"finetune.train_path={train_path}", f"finetune.dev_path={train_path}",
        f"hardware.num_threads={args.threads}", f"hardware.device={args.device}",
        f"hardware.precision={args.precision}",
    ])
    setup = finetune.prepare(cfg)
    task, device = setup.task, setup.device
    train = task.read(train_path, split="train", labels_num=None, skip_bad_rows=False)
    labels_num = task.labels_num_from(train)
    pad_id = setup.tokenizer.vocab.pad_id
    model = finetune.new_model(setup, labels_num)
    fixed, dynamic, bucketed = f"padding to {args.seq} (original)", "per-batch padding (uer)", \
        "per-batch + length buckets"
    models = {fixed: copy.deepcopy(model), dynamic: model, bucketed: copy.deepcopy(model)}
    batches = SampledBatches(task, train.examples, args.batch, cfg.seed, source=str(train_path))
    buckets = SampledBatches(task, train.examples, args.batch, cfg.seed, source=str(train_path),
                             length_bucketing=True)
    steps = batches.batches_per_epoch
    if steps <= args.warmup:
        raise SystemExit(f"--rows {args.rows} gives {steps} batches of {args.batch}; need more than --warmup "
                         f"{args.warmup}")
    lengths = [len(example.src) for example in train.examples]
    print(f"{len(train)} rows of {args.data}, mean {sum(lengths) / len(lengths):.1f} tokens (max {max(lengths)}), "
          f"size={args.size} batch={args.batch} seq_length={args.seq} device={device} precision={args.precision} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")

    trainers = {name: common.trainer(m, 2e-5, device=device, precision=args.precision, steps=steps)
                for name, m in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    tokens = dict.fromkeys(models, 0)
    timed_rows = 0
    for step in range(steps):
        batch = batches.next_batch()
        feeds = {fixed: pad_to(batch, args.seq, pad_id), dynamic: batch, bucketed: buckets.next_batch()}
        for name, trainer in trainers.items():
            inputs = feeds[name]
            if step >= args.warmup:
                tokens[name] += inputs["src"].numel()
            elapsed = timed(device, lambda: trainer.train_step([inputs]))
            if step >= args.warmup:
                seconds[name] += elapsed
        if step >= args.warmup:
            timed_rows += batch["src"].size(0)
    print(f"training, {steps - args.warmup} timed steps ({timed_rows} examples) each:")
    report({name: timed_rows / seconds[name] for name in models}, tokens, fixed, recorder, "training")

    print(f"inference over the {len(train)} rows, file order, through uer.tasks.predict "
          f"(best of {args.infer_rounds} passes):")
    infer_s = dict.fromkeys(models, float("inf"))
    calls = {fixed: (PaddedPredict(models[fixed], args.seq, pad_id), False), dynamic: (models[dynamic], False),
             bucketed: (models[bucketed], True)}
    for _ in range(args.infer_rounds):
        for name, (m, by_length) in calls.items():
            infer_s[name] = min(infer_s[name], timed(device, lambda: predict(
                m, task, train, batch_size=args.batch, device=device, precision=args.precision, by_length=by_length)))
    tokens = {fixed: len(lengths) * args.seq, dynamic: token_slots(lengths, args.batch),
              bucketed: token_slots(sorted(lengths, reverse=True), args.batch)}
    report({name: len(train) / infer_s[name] for name in models}, tokens, fixed, recorder, "inference")
    recorder.save()


def report(rates: dict, tokens: dict, baseline: str, recorder, what: str) -> None:
    for name, rate in rates.items():
        ratio = "" if name == baseline else f"  {rate / rates[baseline]:.2f}x the original"
        print(f"  {name:<30} {rate:9.1f} examples/s  ({tokens[name]} token slots){ratio}")
        if name != baseline:
            recorder.add(f"{what}, {name}", rate, "examples/s", "padding to seq_length", rates[baseline])


if __name__ == "__main__":
    main()
