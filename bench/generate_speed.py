"""Text generation speed: 128 new tokens with the key/value cache vs re-encoding the sequence every step.

    python bench/generate_speed.py                      # size=tiny GPT (encoder=gpt target=lm), CPU
    python bench/generate_speed.py --size small --prompt-tokens 64 --device cuda

A randomly initialised GPT of the chosen size over the Google Chinese vocab (21,128
tokens) continues a prompt cut from corpora/book_review.txt greedily (no stop at [SEP],
so both runs make exactly ``--new-tokens`` tokens).  One CPU thread by default: one
sequence decoded token by token multiplies small matrices, and a second thread mostly
measures how busy the other core is (``--threads 0`` = torch's default).  The output
layer (hidden -> 21,128 logits) costs the same in both ways, so the ratio grows with the
number of layers (``--size small``) and the prompt length.  Printed: seconds and tokens/s for
each way (best of ``--repeats``), the speed-up ratio, and whether both produced the same
tokens (they must).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.models import build_model  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402
from uer.tools.generation import generate_ids, token_picker  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402  (bench/common.py)
import results  # noqa: E402  (bench/results.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    common.add_decoding_arguments(parser, new_tokens=128)
    results.add_arguments(parser)
    args = parser.parse_args()
    common.use_threads(args.threads)

    cfg = common.compose([f"size={args.size}", "encoder=gpt", "target=lm"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab)).to(args.device).eval()
    text = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()[0]
    prompt = [tokenizer.vocab.cls_id, *tokenizer.encode(text)[: args.prompt_tokens - 1]]
    greedy = token_picker(0.0, 0, 1.0, None)
    max_length = cfg.embedding.max_seq_length

    recorder = results.Recorder("generation", f"generation, `size={args.size}` GPT, {len(prompt)}-token prompt, "
                                f"{args.new_tokens} new tokens, greedy", "the same model without the key/value cache",
                                args.json, device=args.device, provisional=args.provisional)

    def run(use_cache: bool) -> tuple[float, list[int]]:
        best, tokens = float("inf"), []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = generate_ids(model.backbone, model.target.output_layer, prompt, args.new_tokens, greedy,
                                  use_cache=use_cache, stop_id=None, max_length=max_length)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, tokens

    run(True)  # warm-up (allocator, kernels)
    plain_s, plain = run(False)
    cached_s, cached = run(True)
    print(f"model: size={args.size} encoder=gpt target=lm, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters, device={args.device}, threads={torch.get_num_threads()}")
    print(f"prompt {len(prompt)} tokens, {args.new_tokens} new tokens, greedy, best of {args.repeats}")
    print(f"without cache: {plain_s:.3f} s ({len(plain) / plain_s:.1f} tokens/s)")
    print(f"with cache:    {cached_s:.3f} s ({len(cached) / cached_s:.1f} tokens/s)")
    print(f"speed-up: {plain_s / cached_s:.2f}x; same tokens: {plain == cached}")
    if plain != cached:
        raise SystemExit("the cached and uncached runs produced different tokens: the cache is wrong")
    recorder.add("with the key/value cache", len(cached) / cached_s, "tokens/s", "without", len(plain) / plain_s,
                 note=f"best of {args.repeats}; same tokens")
    recorder.save()


if __name__ == "__main__":
    main()
