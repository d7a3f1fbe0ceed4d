"""Reproduction (not CI): does pre-training help?  A classifier on Douban book reviews
fine-tuned from random weights and from a model pre-trained on corpora/book_review.txt.

    python experiments/pretraining_helps.py --recipe lstm          # the full run (hours on a CPU)
    python experiments/pretraining_helps.py --recipe bert_tiny     # tiny BERT, MLM pre-training
    python experiments/pretraining_helps.py --recipe lstm --device cuda --threads 8
    python experiments/pretraining_helps.py --dry-run              # print the commands only
    python experiments/pretraining_helps.py --corpus my_reviews.txt  # pre-train on another corpus
    python experiments/pretraining_helps.py --quick                # a minutes-long smoke run of the same steps

The original toolkit's recipes, as commands of this project (each one a ``python main.py``
run with its own Hydra run directory under ``--out``):

1. **Without pre-training**: fine-tune from random weights on ``datasets/douban_book_review``.
   ``lstm``: a 2-layer LSTM (``embedding=word encoder=lstm``, the original rnn size: emb
   512, hidden 1024), learning rate 1e-3, batch 64, 3 epochs, mean pooling; expected test
   accuracy of at least 79%.  ``bert_tiny``: ``size=tiny``, learning rate 1e-4, batch 64,
   1 epoch (about 80 from random init, the issue's reference).
2. **Pre-training** on ``corpora/book_review.txt`` (``--pretrain-steps`` steps, batch 64):
   ``lstm`` as a left-to-right language model (``target=lm``, learning rate 1e-3),
   ``bert_tiny`` with the MLM target and dynamic masking (learning rate 1e-4).
3. **With pre-training**: step 1 again, starting from the pre-trained checkpoint.

Finally the two test accuracies and the gain are printed (and written to
``--out/summary.json``).  A step whose output already exists (dataset, checkpoint,
results) is skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "douban_book_review"
RECIPES = {
    # model overrides, pre-training target (+ preprocess options), pre-training lr, fine-tuning options, expected
    "lstm": dict(model=["embedding=word", "encoder=lstm"], target="lm", preprocess=[], pretrain_lr="1e-3",
                 finetune=["finetune.learning_rate=1e-3", "finetune.batch_size=64", "finetune.epochs_num=3",
                           "task.pooling=mean"], expected=0.79),
    "bert_tiny": dict(model=["size=tiny"], target="mlm", preprocess=["preprocess.dynamic_masking=true"],
                      pretrain_lr="1e-4",
                      finetune=["finetune.learning_rate=1e-4", "finetune.batch_size=64", "finetune.epochs_num=1"],
                      expected=None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="lstm")
    parser.add_argument("--out", default=None, help="default: outputs/pretraining_helps_RECIPE")
    parser.add_argument("--device", default="cpu", help="hardware.device (cpu, cuda, cuda:N)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--threads", type=int, default=0, help="hardware.num_threads; 0 = torch's default")
    parser.add_argument("--pretrain-steps", type=int, default=20000)
    parser.add_argument("--corpus", default=str(ROOT / "corpora" / "book_review.txt"),
                        help="pre-training corpus (the bundled one is the text of the Douban train split)")
    parser.add_argument("--seq-length", type=int, default=128, help="pre-training and fine-tuning sequence length")
    parser.add_argument("--processes", type=int, default=4, help="preprocess.processes_num")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small slices of the data, a small model, a few steps (checks the pipeline, "
                             "not the accuracy)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()

    recipe = RECIPES[args.recipe]
    out = Path(args.out or ROOT / "outputs" / f"pretraining_helps_{args.recipe}")
    train, dev, test = DATA / "train.tsv", DATA / "dev.tsv", DATA / "test.tsv"
    corpus = Path(args.corpus)
    if not corpus.is_file():
        parser.error(f"--corpus {corpus} not found; give a text file, one document per line")
    model = list(recipe["model"])
    hardware = [f"hardware.device={args.device}", f"hardware.precision={args.precision}",
                f"hardware.num_threads={args.threads}"]
    finetune_opts = [*recipe["finetune"], f"finetune.seq_length={args.seq_length}"]
    pretrain_steps = args.pretrain_steps
    if args.quick:
        out = out.with_name(out.name + "_quick")
        slices = out / "slices"
        if not args.dry_run:
            slices.mkdir(parents=True, exist_ok=True)
            train, dev, test = (head(path, slices / path.name, rows) for path, rows in
                                ((train, 512), (dev, 128), (test, 128)))
            corpus = head(corpus, slices / corpus.name, 400, header=False)
        model += ["model.emb_size=64", "model.hidden_size=64", "model.feedforward_size=128", "model.heads_num=2"]
        finetune_opts = [opt for opt in finetune_opts if not opt.startswith("finetune.epochs_num")]
        finetune_opts += ["finetune.epochs_num=1"]
        pretrain_steps = 20

    target = recipe["target"]
    dataset = out / "data" / f"book_review_{target}"
    lm_dir = out / "models" / f"pretrained_{target}"
    checkpoint = lm_dir / f"step_{pretrain_steps}.pt"

    def finetune(name: str, *extra: str) -> list[str]:
        return ["stage=finetune", "task=classifier", *model, *finetune_opts, *hardware, *extra,
                f"finetune.train_path={train}", f"finetune.dev_path={dev}", f"finetune.test_path={test}",
                f"output_model_path={out / 'models' / name}", f"hydra.run.dir={out / 'runs' / name}"]

    steps = [
        ("fine-tune without pre-training", out / "runs" / "scratch" / "results.jsonl", finetune("scratch")),
        ("preprocess the pre-training corpus", dataset / "meta.json",
         ["stage=preprocess", f"target={target}", *recipe["preprocess"], f"preprocess.corpus_path={corpus}",
          f"preprocess.dataset_path={dataset}",
          f"preprocess.seq_length={args.seq_length}", f"preprocess.processes_num={args.processes}",
          f"hydra.run.dir={out / 'runs' / 'preprocess'}"]),
        (f"pre-train with target={target}", checkpoint,
         ["stage=pretrain", *model, f"target={target}", f"pretrain.dataset_path={dataset}",
          f"pretrain.total_steps={pretrain_steps}", f"pretrain.save_checkpoint_steps={max(pretrain_steps // 4, 1)}",
          "pretrain.batch_size=64", f"pretrain.learning_rate={recipe['pretrain_lr']}",
          f"pretrain.report_steps={min(100, pretrain_steps)}",
          *hardware, f"output_model_path={lm_dir}", f"hydra.run.dir={out / 'runs' / 'pretrain'}"]),
        ("fine-tune the pre-trained model", out / "runs" / "pretrained" / "results.jsonl",
         finetune("pretrained", f"pretrained_model_path={checkpoint}")),
    ]
    for title, done, overrides in steps:
        command = [sys.executable, "main.py", *overrides]
        print(f"## {title}\n{shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        if done.exists():
            print(f"   ({done} exists: skipped)", flush=True)
            continue
        subprocess.run(command, cwd=ROOT, check=True)

    if args.dry_run:
        return
    scratch = read_test_accuracy(out / "runs" / "scratch" / "results.jsonl")
    pretrained = read_test_accuracy(out / "runs" / "pretrained" / "results.jsonl")
    summary = {"scratch_test_acc": scratch, "pretrained_test_acc": pretrained, "gain": pretrained - scratch,
               "pretrain_steps": pretrain_steps, "quick": args.quick}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    expected = recipe["expected"]
    verdict = "" if args.quick or expected is None else \
        f"  (expected >= {expected:.2f}: {'ok' if scratch >= expected else 'BELOW'})"
    print(f"\n{args.recipe} on douban_book_review, test accuracy:\n"
          f"  without pre-training  {scratch:.4f}{verdict}\n"
          f"  pre-trained ({target}, {pretrain_steps} steps)  {pretrained:.4f}\n"
          f"  gain  {100 * (pretrained - scratch):+.2f} points")


def head(src: Path, dst: Path, rows: int, header: bool = True) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join(lines[:rows + int(header)]) + "\n", encoding="utf-8")
    return dst


def read_test_accuracy(results: Path) -> float:
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    tests = [record for record in records if record.get("split") == "test"]
    if not tests:
        raise SystemExit(f"{results} holds no test score; did the fine-tuning run finish?")
    return float(tests[-1]["acc"])


if __name__ == "__main__":
    main()
