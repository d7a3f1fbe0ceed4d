"""Pre-training throughput: uer vs Hugging Face ``BertForMaskedLM`` with the same config, batch and length.

    python bench/pretrain_speed.py --size tiny
    python bench/pretrain_speed.py --size base --steps 4 --bf16

Both models see the same batches and do forward + backward + AdamW step.  Printed:
1. full-length batches (every row ``--seq`` tokens, as ``full_sentences`` gives): tokens/s, ratio;
2. real reviews from corpora/book_review.txt (about 43 tokens each), batched by length as
   ``stage=pretrain`` does: uer pads each batch to its longest row, HF pads every row to
   ``--seq``; non-padding tokens/s, ratio;
3. with ``--flops``: achieved model FLOP/s as a fraction of this machine's measured fp32 matmul rate;
4. with ``--bf16``: uer under bf16 autocast vs fp32.

Like main.py, the script restarts itself once with uer's glibc malloc settings
(uer/malloc_tuning.py; ``UER_MALLOC_TUNING=0`` keeps glibc's defaults).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer import malloc_tuning  # noqa: E402

malloc_tuning.restart_with_tuned_malloc()  # as main.py does: both models run under the same allocator

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from uer.data.build import build_pretrain_dataset  # noqa: E402
from uer.data.pretrain_dataset import PretrainDataset  # noqa: E402
from uer.data.sampler import EpochSampler  # noqa: E402
from uer.models import build_model  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402
from uer.training.optim import build_optimizer  # noqa: E402


def sizes(name: str) -> dict:
    return dict(OmegaConf.load(ROOT / "conf" / "size" / f"{name}.yaml"))


def uer_model(size: dict, vocab_size: int):
    emb = SimpleNamespace(type="word_pos_seg", emb_size=size["emb_size"], max_seq_length=512,
                          dropout=size["dropout"], layernorm_eps=1e-12)
    enc = SimpleNamespace(type="transformer", mask="fully_visible", hidden_size=size["hidden_size"],
                          feedforward_size=size["feedforward_size"], heads_num=size["heads_num"],
                          layers_num=size["layers_num"], dropout=size["dropout"], hidden_act="gelu",
                          parameter_sharing=False, layernorm_eps=1e-12)
    return build_model(emb, enc, SimpleNamespace(type="mlm", tie_weights=True), vocab_size)


def hf_model(size: dict, vocab_size: int):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=vocab_size, hidden_size=size["hidden_size"], num_hidden_layers=size["layers_num"],
                        num_attention_heads=size["heads_num"], intermediate_size=size["feedforward_size"],
                        hidden_dropout_prob=size["dropout"], attention_probs_dropout_prob=size["dropout"],
                        max_position_embeddings=512, type_vocab_size=3, layer_norm_eps=1e-12)
    return BertForMaskedLM(config)


def datasets(tokenizer, lines: list[str], seq: int, work: Path) -> dict:
    """Static-MLM datasets built by our preprocess: full-length rows, and one review per row."""
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = {}
    for label, full in (("full-length batches", True), ("real reviews, non-padding tokens", False)):
        path = work / ("full" if full else "reviews")
        build_pretrain_dataset(corpus, path, tokenizer, "mlm", seq_length=seq, full_sentences=full,
                               tokenizer_cfg=tokenizer.identity())
        out[label] = PretrainDataset(path)
    return out


def batches(dataset, batch: int, count: int, seq: int, seed: int = 0):
    """(uer batch padded to its longest row, the same rows as HF inputs padded to seq) pairs."""
    # As stage=pretrain does by default (pretrain.length_bucketing): rows of similar length share a batch.
    sampler = EpochSampler(len(dataset), batch, seed, lengths=dataset.lengths())
    out = []
    for _ in range(count):
        indices, epoch = sampler.next_indices()
        ours = dataset.batch(indices, epoch, seed)
        b, longest = ours["src"].shape
        padded = torch.zeros((b, seq), dtype=torch.long)
        padded[:, :longest] = ours["src"]
        labels = torch.full((b * seq,), -100, dtype=torch.long)
        rows, cols = ours["mlm_positions"] // longest, ours["mlm_positions"] % longest
        labels[rows * seq + cols] = ours["mlm_labels"]
        hf = {"input_ids": padded, "token_type_ids": torch.zeros_like(padded), "attention_mask": (padded != 0).long(),
              "labels": labels.view(b, seq)}
        out.append((ours, hf))
    return out


def time_steps(step_fn, inputs, warmup: int) -> float:
    for item in inputs[:warmup]:
        step_fn(item)
    start = time.perf_counter()
    for item in inputs[warmup:]:
        step_fn(item)
    return time.perf_counter() - start


def train_step(model, optimizer, call, precision=None):
    def step(inputs):
        ctx = torch.autocast("cpu", dtype=precision) if precision else torch.autocast("cpu", enabled=False)
        with ctx:
            loss = call(model, inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def uer_call(model, batch):
    return model(batch).loss


def hf_call(model, inputs):
    return model(**inputs).loss


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def model_flops(size: dict, vocab_size: int, batch: dict) -> float:
    """Forward + backward FLOPs of the matmuls uer runs on this batch (3x forward)."""
    h, f, layers = size["hidden_size"], size["feedforward_size"], size["layers_num"]
    b, length = batch["src"].shape
    tokens = b * length
    per_layer = 2 * tokens * (4 * h * h + 2 * h * f) + 2 * 2 * b * length * length * h
    head = 2 * len(batch["mlm_positions"]) * (h * h + h * vocab_size)
    return 3 * (layers * per_layer + head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--flops", action="store_true", help="print model FLOP/s as a fraction of matmul peak")
    parser.add_argument("--bf16", action="store_true", help="also time uer under bf16 autocast")
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = build_tokenizer(type="bert", vocab_path=str(ROOT / "models/google_zh_vocab.txt"))
    lines = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:4000]
    size = sizes(args.size)
    vocab_size = len(tokenizer.vocab)
    warmup = 2
    print(f"size={args.size} batch={args.batch} seq={args.seq} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}; {malloc_tuning.describe()}")

    def run(name, model, call, inputs, tokens_of, precision=None):
        optimizer = build_optimizer(model, 1e-4, 0.01, 1e-6)
        seconds = time_steps(train_step(model, optimizer, call, precision), inputs, warmup)
        rate = sum(tokens_of(x) for x in inputs[warmup:]) / seconds
        print(f"  {name:<34} {rate:10.0f} tokens/s")
        return rate, seconds

    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    for label, dataset in datasets(tokenizer, lines, args.seq, work).items():
        full = label.startswith("full")
        pairs = batches(dataset, args.batch, warmup + args.steps, args.seq)
        print(f"{label}:")
        ours, ours_s = run("uer (fp32)", uer_model(size, vocab_size), uer_call, [p[0] for p in pairs],
                           lambda b: int((b["src"] != 0).sum()))
        theirs, _ = run("transformers BertForMaskedLM (fp32)", hf_model(size, vocab_size), hf_call,
                        [p[1] for p in pairs], lambda b: int(b["attention_mask"].sum()))
        print(f"  ratio uer / transformers: {ours / theirs:.2f}x")
        if full and args.flops:
            achieved = sum(model_flops(size, vocab_size, p[0]) for p in pairs[warmup:]) / ours_s
            peak = matmul_flops()
            print(f"  model FLOP/s {achieved / 1e9:.1f} G of measured fp32 matmul {peak / 1e9:.1f} G "
                  f"= {achieved / peak:.2f}")
        if full and args.bf16:
            bf16, _ = run("uer (bf16 autocast)", uer_model(size, vocab_size), uer_call, [p[0] for p in pairs],
                          lambda b: int((b["src"] != 0).sum()), torch.bfloat16)
            print(f"  ratio bf16 / fp32: {bf16 / ours:.2f}x")


if __name__ == "__main__":
    main()
