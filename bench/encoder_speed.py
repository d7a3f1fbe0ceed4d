"""Fine-tuning speed of the RNN/CNN encoders beside the tiny transformer.

    python bench/encoder_speed.py                                   # lstm, gatedcnn vs bert size=tiny
    python bench/encoder_speed.py --rows 256 --threads 1 --encoders lstm,gatedcnn,bilstm,cnn
    python bench/encoder_speed.py --device cuda --precision bf16 --rows 4096

Each model is the classifier (``task.pooling=mean``) that ``stage=finetune`` would build
from ``encoder=NAME`` with that encoder's own original size (``lstm``: size=rnn,
``gatedcnn``: size=gatedcnn_9, ...; ``--size`` forces one size on all) and the embedding
the encoder option brings (``word`` for RNN/CNN).  All models train on the same batches
of the first ``--rows`` rows of douban_book_review's train.tsv (the library's reader,
collate, Trainer and optimiser; ``finetune.seq_length=--seq``, per-batch padding), their
steps interleaved so a busy machine slows all alike.  Printed: training and inference
examples/s of each (after ``--warmup`` untimed steps), parameters, and the ratio to the
transformer's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.finetuning import setup as finetune  # noqa: E402
from uer.finetuning.batches import SampledBatches  # noqa: E402
from uer.combinations import combination_rows  # noqa: E402
from uer.runtime import autocast  # noqa: E402
from uer.training.trainer import to_device  # noqa: E402

import common  # noqa: E402  (bench/common.py)
import results  # noqa: E402  (bench/results.py)
from timing import timed  # noqa: E402  (bench/timing.py)

BASELINE = "bert size=tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", default="lstm,gatedcnn",
                        help="encoder choices (as uer.models.compat.combination_rows() names them: lstm, "
                             "'lstm with bidirectional=true', ...), comma-separated")
    parser.add_argument("--size", default=None, help="one size= for the compared encoders (default: their own)")
    parser.add_argument("--rows", type=int, default=1024, help="training rows from the top of train.tsv")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128, help="finetune.seq_length")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each model")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--data", default=str(ROOT / "datasets" / "douban_book_review" / "train.tsv"))
    results.add_arguments(parser)
    args = parser.parse_args()
    recorder = results.Recorder("encoders",
                                f"RNN/CNN encoders fine-tuning, {args.rows:,} Douban rows, batch {args.batch}",
                                f"the tiny BERT classifier ({BASELINE}), same batches", args.json, device=args.device,
                                provisional=args.provisional)

    choices = {choice.text: choice for choice in combination_rows()}
    wanted = [name.strip() for name in args.encoders.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in choices]
    if unknown:
        raise SystemExit(f"unknown encoder {unknown[0]!r}; choose from: {', '.join(choices)}")

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[:args.rows + 1]
    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    train_path = work / "train.tsv"
    train_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    variants = {BASELINE: ["encoder=bert", "size=tiny"]}
    for name in wanted:
        variants[name] = [*choices[name].overrides, *([f"size={args.size}"] if args.size else [])]

    setups = {}
    for name, overrides in variants.items():
        cfg = common.compose([
            "stage=finetune", "task=classifier", "task.pooling=mean", *overrides,
            f"finetune.seq_length={args.seq}", f"finetune.batch_size={args.batch}",
            f"finetune.train_path={train_path}", f"finetune.dev_path={train_path}",
            f"hardware.num_threads={args.threads}", f"hardware.device={args.device}",
            f"hardware.precision={args.precision}",
        ])
        setups[name] = finetune.prepare(cfg)
    first = next(iter(setups.values()))
    task, device = first.task, first.device
    train = task.read(train_path, split="train", labels_num=None, skip_bad_rows=False)
    labels_num = task.labels_num_from(train)
    batches = SampledBatches(task, train.examples, args.batch, first.cfg.seed, source=str(train_path))
    steps = batches.batches_per_epoch
    if steps <= args.warmup:
        raise SystemExit(f"--rows {args.rows} gives {steps} batches of {args.batch}; need more than --warmup "
                         f"{args.warmup}")

    models, trainers = {}, {}
    for name, setup in setups.items():
        models[name] = finetune.new_model(setup, labels_num)
        trainers[name] = common.trainer(models[name], 1e-3, device=device, precision=args.precision, steps=steps)
    lengths = [len(example.src) for example in train.examples]
    print(f"{len(train)} rows of {args.data}, mean {sum(lengths) / len(lengths):.1f} tokens (max {max(lengths)}), "
          f"batch={args.batch} seq_length={args.seq} device={device} precision={args.precision} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    for name, setup in setups.items():
        arch = setup.cfg
        print(f"  {name:<22} embedding={arch.embedding.type} emb_size={arch.model.emb_size} "
              f"hidden_size={arch.model.hidden_size} layers_num={arch.model.layers_num} "
              f"parameters={sum(p.numel() for p in models[name].parameters()) / 1e6:.1f}M")

    seconds = dict.fromkeys(models, 0.0)
    timed_rows = 0
    for step in range(steps):
        batch = batches.next_batch()
        for name, trainer in trainers.items():
            elapsed = timed(device, lambda: trainer.train_step([batch]))
            if step >= args.warmup:
                seconds[name] += elapsed
        if step >= args.warmup:
            timed_rows += batch["src"].size(0)
    print(f"fine-tuning, {steps - args.warmup} timed steps ({timed_rows} examples) each:")
    report({name: timed_rows / seconds[name] for name in models}, recorder, "training")

    infer_s = dict.fromkeys(models, 0.0)
    with torch.inference_mode():
        for model in models.values():
            model.eval()
        for start_row in range(0, len(train), args.batch):
            batch = to_device(task.collate(train.examples[start_row:start_row + args.batch]), device)
            for name, model in models.items():
                with autocast(device, args.precision):
                    infer_s[name] += timed(device, lambda: model.predict(batch))
    print(f"inference over the {len(train)} rows:")
    report({name: len(train) / infer_s[name] for name in models}, recorder, "inference")
    recorder.save()


def report(rates: dict, recorder, what: str) -> None:
    for name, rate in rates.items():
        ratio = "" if name == BASELINE else f"  {rate / rates[BASELINE]:.2f}x the transformer's"
        print(f"  {name:<22} {rate:9.1f} examples/s{ratio}")
        if name != BASELINE:
            recorder.add(f"{what}, {name}", rate, "examples/s", "tiny BERT", rates[BASELINE])


if __name__ == "__main__":
    main()
