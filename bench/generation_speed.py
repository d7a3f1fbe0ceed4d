"""Encoder-decoder generation speed: uer's search (uer/models/generation.py) vs transformers' generate(), same model.

    python bench/generation_speed.py                     # a random BART, d_model 256, 3+3 layers, CPU
    python bench/generation_speed.py --model t5 --device cuda --batch 32

Both sides drive the same randomly initialised transformers model (BART or T5 over the
Google Chinese vocab, 21,128 tokens) with transformers' own key/value cache: transformers
through ``model.generate()``, uer through its generation protocol (the adapter in
tests/generation_testing.py: the encoder once, one token per live row a step, caches
reordered for beam search). So this measures the search and its bookkeeping, not the
model; a row for uer's own encoder-decoder belongs beside it.

Sources: reviews of corpora/book_review.txt, tokenized and cut to ``--source-tokens``,
sorted by length and cut into ``--batches`` batches of ``--batch`` rows (length buckets).
Each batch is decoded greedily and with beam search (4 beams, length penalty 1, no
early stopping), ``--new-tokens`` at most; the two sides alternate batch by batch, best of
``--repeats``.  The random model rarely ends a row by itself; ``--end-bias`` makes rows
end early (where uer's search stops computing them and transformers' does not).  Printed:
generated tokens/s of each side (the tokens of the returned sequences), the ratio, and
whether both chose the same tokens (they must).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from generation_testing import HFSeq2Seq, hf_generate, tiny_bart, tiny_t5  # noqa: E402
from uer.models.generation import GenerationConfig, generate  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402  (bench/common.py)
import results  # noqa: E402  (bench/results.py)
from timing import timed  # noqa: E402  (bench/timing.py)

MODELS = {"bart": (tiny_bart, 2), "t5": (tiny_t5, 1)}  # builder, end token
SEARCHES = {"greedy": {}, "beam 4": {"num_beams": 4}}


def batches(tokenizer, size: int, count: int, source_tokens: int) -> list[torch.Tensor]:
    """``count`` padded (size, L) source batches: the first ``size * count`` reviews, sorted by length."""
    lines = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()
    ids = []
    for line in lines:
        tokens = tokenizer.encode(line)[:source_tokens]
        if tokens:
            ids.append(tokens)
        if len(ids) == size * count:
            break
    ids.sort(key=len)
    out = []
    for start in range(0, len(ids), size):
        group = ids[start:start + size]
        src = torch.zeros(len(group), max(map(len, group)), dtype=torch.long)
        for row, tokens in enumerate(group):
            src[row, :len(tokens)] = torch.tensor(tokens)
        out.append(src)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="bart")
    parser.add_argument("--width", type=int, default=256, help="d_model (the feed-forward is 4x)")
    parser.add_argument("--layers", type=int, default=3, help="encoder layers, and as many decoder layers")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--end-bias", type=float, default=0.0,
                        help="added to the end token's logit, so that rows end at varied steps (0: rows rarely "
                             "end; with the default model 20 ends them about a third early, 25 at once)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--source-tokens", type=int, default=64)
    common.add_decoding_arguments(parser, new_tokens=32)
    results.add_arguments(parser)
    args = parser.parse_args()
    common.use_threads(args.threads)

    tokenizer = build_tokenizer(common.compose(["size=tiny"]).tokenizer)
    build, eos = MODELS[args.model]
    model = build(vocab=len(tokenizer.vocab), width=args.width, layers=args.layers, heads=args.heads,
                  end_bias=args.end_bias).to(args.device)
    sources = [src.to(args.device) for src in batches(tokenizer, args.batch, args.batches, args.source_tokens)]
    print(f"model: random {args.model}, d_model {args.width}, {args.layers}+{args.layers} layers, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, device={args.device}, "
          f"threads={torch.get_num_threads()}")
    print(f"{len(sources)} batches of {args.batch} reviews, source lengths "
          f"{', '.join(str(int(src.ne(0).sum(1).max())) for src in sources)} (longest per batch), "
          f"{args.new_tokens} new tokens at most, best of {args.repeats}")
    recorder = results.Recorder("seq2seq_generation", f"encoder-decoder generation, random {args.model} "
                                f"(d_model {args.width}, {args.layers}+{args.layers} layers), batch {args.batch}, "
                                f"{args.new_tokens} new tokens", "transformers' generate(), same model",
                                args.json, device=args.device, provisional=args.provisional)
    adapter, device = HFSeq2Seq(model), torch.device(args.device)
    for name, settings in SEARCHES.items():
        config = GenerationConfig(max_new_tokens=args.new_tokens, **settings)
        ours_s = theirs_s = 0.0
        tokens = 0
        for src in sources:
            seg = src.ne(0).long()
            ours = lambda: generate(adapter, src, seg, config, eos_id=eos)  # noqa: E731
            theirs = lambda: hf_generate(model, src, config, eos)  # noqa: E731
            ours(), theirs()  # warm-up (allocator, kernels)
            best_ours = best_theirs = float("inf")
            for _ in range(args.repeats):
                chosen = {}
                best_ours = min(best_ours, timed(device, lambda: chosen.setdefault("uer", ours())))
                best_theirs = min(best_theirs, timed(device, lambda: chosen.setdefault("hf", theirs())))
                if chosen["uer"] != chosen["hf"]:
                    raise SystemExit(f"{name}: uer's search and transformers' generate() chose different tokens")
            ours_s, theirs_s = ours_s + best_ours, theirs_s + best_theirs
            tokens += sum(map(len, chosen["uer"]))
        if not tokens:
            raise SystemExit(f"{name}: every row ended at once; lower --end-bias")
        print(f"{name}: uer {tokens / ours_s:.1f} tokens/s, transformers {tokens / theirs_s:.1f} tokens/s "
              f"= {theirs_s / ours_s:.2f}x ({tokens} tokens; same tokens)")
        recorder.add(name, tokens / ours_s, "tokens/s", "transformers", tokens / theirs_s,
                     note=f"best of {args.repeats}; same tokens")
    recorder.save()


if __name__ == "__main__":
    main()
