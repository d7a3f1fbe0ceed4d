"""Encoder-decoder speed: uer's model vs transformers ``BartForConditionalGeneration``, same weights, batches and
threads, one process.

    python bench/seq2seq_speed.py                    # d_model 256, 3+3 layers, the bundled vocabulary, 1 thread
    python bench/seq2seq_speed.py --device cuda --batch 32 --threads 0

A random BART (tests/generation_testing.py's seeded ``tiny_bart`` at this size: no dropout, 64 positions) is
converted to uer by tool=convert's tables (``uer.io.hf_families``), so both sides start from the same weights.

1. training: the bundled parallel corpus (datasets/test_data/parallel/train.tsv) preprocessed as
   ``stage=preprocess target=seq2seq`` does (source and target cut to ``--seq`` tokens), batched by length as
   stage=pretrain does.  Each batch goes through uer's Trainer (forward, backward, clipping, fused AdamW step:
   the model ``decoder=transformer target=seq2seq`` builds) and through transformers' Trainer-style step
   (bench/peers.py; ``labels`` = ``tgt_out`` with padding as -100), alternating batch by batch.  tokens/s
   counts the non-padding source and target tokens.
2. generation: the sources of the first ``--gen-rows`` rows, greedy and beam search (4 beams, length
   penalty 1), ``--new-tokens`` at most: uer's model through ``uer.models.generation.generate_rows`` (length
   buckets of ``--gen-batch`` rows) vs transformers' ``generate()`` on the same batches; both must choose the
   same tokens.  Best of ``--repeats``, alternating; tokens/s counts the generated tokens.

The random model rarely ends a row by itself, so most rows run to ``--new-tokens``.

Where the two sides differ: uer projects only the labelled (non-padding) target positions onto the
vocabulary, transformers every position (a user of ``BartForConditionalGeneration`` passing ``labels``
pays that too); uer's loss (``uer.models.cross_entropy``) writes no tensor of the logits' size besides the
logits, where ``F.cross_entropy`` writes three; a generation step of up to 16 rows computes its logits as
``(W @ h^T)^T``, which CPU BLAS runs about 1.7 times as fast as ``h @ W^T`` on the 8 rows of a greedy batch.
The rest (the layers' matmuls, the vocabulary projection and its two gradients, attention, AdamW) is the
same work on both sides, and on a CPU it is most of a training step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from generation_testing import hf_generate, tiny_bart  # noqa: E402
from uer.data.build import build_pretrain_dataset  # noqa: E402
from uer.data.pretrain_dataset import PretrainDataset  # noqa: E402
from uer.data.sampler import EpochSampler  # noqa: E402
from uer.io.hf_families import SEQ2SEQ_FAMILIES, seq2seq_hf_to_uer  # noqa: E402
from uer.io.uer_names import from_uer_state_dict  # noqa: E402
from uer.models import build_model  # noqa: E402
from uer.models.generation import GenerationConfig, generate_rows  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402  (bench/common.py)
import peers  # noqa: E402  (bench/peers.py)
import results  # noqa: E402  (bench/results.py)
from timing import timed  # noqa: E402  (bench/timing.py)

PARALLEL = ROOT / "datasets" / "test_data" / "parallel" / "train.tsv"
EOS = 2  # tiny_bart's end token
SEARCHES = {"greedy": {}, "beam 4": {"num_beams": 4}}
GOAL = 1.2  # uer / transformers, issue 22
LEARNING_RATE = 1e-4


def converted(theirs, vocab_size: int):
    """uer's encoder-decoder holding ``theirs``'s weights."""
    uer, nodes = seq2seq_hf_to_uer(SEQ2SEQ_FAMILIES["bart"], theirs.state_dict(), theirs.config.to_dict(), "bart",
                                   "config.json")
    model = build_model(nodes["embedding"], nodes["encoder"], nodes["target"], vocab_size,
                        decoder_cfg=nodes["decoder"])
    ours = from_uer_state_dict(uer)
    model.load_state_dict({key: ours[key] for key in model.state_dict()})
    return model


def training_batches(tokenizer, seq: int, batch: int, count: int, seed: int, work: Path) -> list[dict]:
    path = work / "dataset"
    build_pretrain_dataset(PARALLEL, path, tokenizer, "seq2seq", seq_length=seq, tgt_seq_length=seq,
                           tokenizer_cfg=tokenizer.identity())
    dataset = PretrainDataset(path)
    sampler = EpochSampler(len(dataset), batch, seed, lengths=dataset.lengths())
    out = []
    for _ in range(count):
        indices, epoch = sampler.next_indices()
        out.append(dataset.batch(indices, epoch, seed))
    return out


def hf_inputs(batch: dict) -> dict:
    return {"input_ids": batch["src"], "attention_mask": batch["seg"].ne(0).long(),
            "decoder_input_ids": batch["tgt_in"], "labels": batch["tgt_out"].masked_fill(batch["tgt_out"].eq(0), -100)}


def train(args, recorder, theirs, vocab_size: int, device: torch.device, work: Path) -> None:
    batches = training_batches(build_tokenizer(common.compose(["size=tiny"]).tokenizer), args.seq, args.batch,
                               args.warmup + args.steps, 7, work)
    ours = common.trainer(converted(theirs, vocab_size).to(device), LEARNING_RATE, device=device, precision="fp32")
    peer = peers.Step(theirs, LEARNING_RATE, device=device)
    steps = {"uer": lambda batch: ours.train_step([batch]), "transformers": lambda batch: peer(hf_inputs(batch))}
    seconds = dict.fromkeys(steps, 0.0)
    for round_, batch in enumerate(batches):
        for side, step in steps.items():
            elapsed = timed(device, lambda: step(batch))
            if round_ >= args.warmup:
                seconds[side] += elapsed
    tokens = sum(int(b["src"].ne(0).sum() + b["tgt_out"].ne(0).sum()) for b in batches[args.warmup:])
    rate = {side: tokens / s for side, s in seconds.items()}
    print(f"training, {args.steps} timed steps of {args.batch} rows ({tokens} source+target tokens): "
          f"uer {rate['uer']:.0f} tokens/s, transformers {rate['transformers']:.0f} tokens/s "
          f"= {rate['uer'] / rate['transformers']:.2f}x")
    recorder.add("training (forward, backward, AdamW)", rate["uer"], "tokens/s", "transformers",
                 rate["transformers"], goal=GOAL)


def sources(args, tokenizer) -> list[list[int]]:
    rows = []
    for line in PARALLEL.read_text(encoding="utf-8").splitlines()[1:]:
        source = line.split("\t")[0]
        ids = [tokenizer.vocab.cls_id, *tokenizer.encode(source)[:args.seq - 2], tokenizer.vocab.sep_id]
        rows.append(ids)
        if len(rows) == args.gen_rows:
            return rows
    return rows


def padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    src = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for row, ids in enumerate(rows):
        src[row, :len(ids)] = torch.tensor(ids)
    return src.to(device)


def generation(args, recorder, theirs, vocab_size: int, device: torch.device) -> None:
    tokenizer = build_tokenizer(common.compose(["size=tiny"]).tokenizer)
    model = converted(theirs, vocab_size).to(device).eval()
    theirs.eval()
    rows = sources(args, tokenizer)
    order = sorted(range(len(rows)), key=lambda row: len(rows[row]))  # generate_rows's length buckets
    buckets = [order[start:start + args.gen_batch] for start in range(0, len(order), args.gen_batch)]
    segments = [[1] * len(ids) for ids in rows]
    for name, settings in SEARCHES.items():
        config = GenerationConfig(max_new_tokens=args.new_tokens, **settings)

        def ours():
            return generate_rows(model, rows, segments, config, eos_id=EOS, batch_size=args.gen_batch,
                                 device=device)

        def hf():
            found = [[] for _ in rows]
            for bucket in buckets:
                for row, ids in zip(bucket, hf_generate(theirs, padded([rows[r] for r in bucket], device), config,
                                                        EOS)):
                    found[row] = ids
            return found

        ours(), hf()  # warm-up (allocator, kernels)
        best = {"uer": float("inf"), "transformers": float("inf")}
        for _ in range(args.repeats):
            chosen = {}
            for side, work in (("uer", ours), ("transformers", hf)):
                best[side] = min(best[side], timed(device, lambda: chosen.setdefault(side, work())))
            if chosen["uer"] != chosen["transformers"]:
                differ = sum(a != b for a, b in zip(chosen["uer"], chosen["transformers"]))
                raise SystemExit(f"{name}: uer and transformers' generate() chose different tokens in {differ} of "
                                 f"{len(rows)} rows")
        tokens = sum(map(len, chosen["uer"]))
        rate = {side: tokens / s for side, s in best.items()}
        print(f"generation, {name}: uer {rate['uer']:.1f} tokens/s, transformers {rate['transformers']:.1f} "
              f"tokens/s = {rate['uer'] / rate['transformers']:.2f}x ({tokens} tokens; same tokens)")
        recorder.add(f"generation, {name}", rate["uer"], "tokens/s", "transformers", rate["transformers"],
                     goal=GOAL, note=f"best of {args.repeats}; same tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256, help="d_model (the feed-forward is 4x)")
    parser.add_argument("--layers", type=int, default=3, help="encoder layers, and as many decoder layers")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64, help="source and target tokens at most (BART's positions)")
    parser.add_argument("--batch", type=int, default=16, help="training rows per batch")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps of each side, after --warmup")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gen-rows", type=int, default=32, help="sources decoded")
    parser.add_argument("--gen-batch", type=int, default=8, help="sources per generation batch")
    common.add_decoding_arguments(parser, new_tokens=32)
    results.add_arguments(parser)
    args = parser.parse_args()
    common.use_threads(args.threads)
    device = torch.device(args.device)

    vocab_size = len(build_tokenizer(common.compose(["size=tiny"]).tokenizer).vocab)
    build = lambda: tiny_bart(vocab=vocab_size, width=args.width, layers=args.layers, heads=args.heads,  # noqa: E731
                              end_bias=0.0).to(device)
    print(f"model: random BART, d_model {args.width}, {args.layers}+{args.layers} layers, vocabulary {vocab_size}, "
          f"device={device}, threads={torch.get_num_threads()}, torch={torch.__version__}")
    recorder = results.Recorder(
        "seq2seq" + ("" if device.type == "cpu" else f"_{device.type}"),
        f"encoder-decoder, random BART (d_model {args.width}, {args.layers}+{args.layers} layers), "
        f"training batch {args.batch}, generation batch {args.gen_batch} with {args.new_tokens} new tokens, "
        f"{device.type}",
        "transformers `BartForConditionalGeneration` (SDPA, fused AdamW; generate()), same weights and batches",
        args.json, device=device.type, provisional=args.provisional)
    with tempfile.TemporaryDirectory(prefix="uer-bench-") as work:
        train(args, recorder, build(), vocab_size, device, Path(work))
    generation(args, recorder, build(), vocab_size, device)
    recorder.save()


if __name__ == "__main__":
    main()
