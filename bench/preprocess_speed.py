"""Preprocessing throughput: uer's whole corpus -> dataset build vs tokenization alone by a named reference.

    python bench/preprocess_speed.py                      # corpora/book_review.txt, target mlm
    python bench/preprocess_speed.py --target bert --corpus corpora/book_review_bert.txt
    python bench/preprocess_speed.py --tokenizer hf       # uer through the reference's own tokenizer.json

uer's number covers everything ``stage=preprocess`` does (read, tokenize, build instances,
mask, write memory-mapped arrays); the reference, Hugging Face ``tokenizers``' Rust BERT
WordPiece pipeline (``BertWordPieceTokenizer.encode_batch`` over the same lines, its own
threads), only tokenizes.  Ratios above 1 mean the full build outruns the reference's
tokenization alone.  ``--tokenizer hf`` builds with ``tokenizer=hf`` over the reference's own
pipeline saved as a ``tokenizer.json`` (same vocabulary), so the two tokenize with the same Rust code.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results  # noqa: E402  (bench/results.py)
from uer.data.build import build_pretrain_dataset  # noqa: E402
from uer.tokenizers import build_tokenizer  # noqa: E402


def reference_tokens_per_s(corpus: Path, vocab: Path) -> tuple[float, int]:
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=True)
    lines = [line for line in corpus.read_text(encoding="utf-8").split("\n") if line.strip()]
    start = time.perf_counter()
    encodings = tokenizer.encode_batch(lines, add_special_tokens=True)
    seconds = time.perf_counter() - start
    tokens = sum(len(e.ids) for e in encodings)
    return tokens / seconds, tokens


def uer_tokenizer(kind: str, vocab: Path, work: str):
    """``tokenizer=bert`` over ``vocab``, or ``tokenizer=hf`` over the reference's pipeline saved as tokenizer.json."""
    if kind == "bert":
        return build_tokenizer({"type": "bert", "vocab_path": str(vocab)})
    from tokenizers import BertWordPieceTokenizer

    path = Path(work) / "tokenizer.json"
    BertWordPieceTokenizer(str(vocab), lowercase=True).save(str(path))
    return build_tokenizer({"type": "hf", "tokenizer_path": str(path)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="corpora/book_review.txt")
    parser.add_argument("--target", default="mlm")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokenizer", choices=["bert", "hf"], default="bert", help="uer's tokenizer= (see above)")
    results.add_arguments(parser)
    args = parser.parse_args()
    recorder = results.Recorder("preprocess", f"preprocess, target {args.target}, `{args.corpus}`",
                                "Rust `tokenizers` `BertWordPieceTokenizer.encode_batch`, tokenization only (its own "
                                "threads)", args.json, provisional=args.provisional)

    corpus, vocab = ROOT / args.corpus, ROOT / "models/google_zh_vocab.txt"
    ref_rate, ref_tokens = reference_tokens_per_s(corpus, vocab)
    print(f"corpus {args.corpus}, target {args.target}, seq_length {args.seq}, tokenizer={args.tokenizer}")
    print(f"  reference: tokenizers BertWordPieceTokenizer, tokenize only   {ref_rate:12,.0f} tokens/s "
          f"({ref_tokens:,} tokens)")
    with tempfile.TemporaryDirectory() as work:
        tokenizer = uer_tokenizer(args.tokenizer, vocab, work)
        variant = "" if args.tokenizer == "bert" else f", tokenizer={args.tokenizer}"
        for processes in args.processes:
            start = time.perf_counter()
            summary = build_pretrain_dataset(corpus, Path(work) / f"d{processes}", tokenizer, args.target,
                                             seq_length=args.seq, processes_num=processes,
                                             tokenizer_cfg=tokenizer.identity())
            rate = summary["tokens"] / (time.perf_counter() - start)
            print(f"  uer preprocess, processes_num={processes:<2} (full build)            {rate:12,.0f} tokens/s "
                  f"({summary['tokens']:,} tokens)  ratio {rate / ref_rate:.2f}x")
            recorder.add(f"full build, processes_num={processes}{variant}", rate / 1e6, "M tokens/s",
                         "tokenization alone", ref_rate / 1e6)
    recorder.save()


if __name__ == "__main__":
    main()
