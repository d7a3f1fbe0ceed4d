"""stage=infer on a file in its own order vs the same rows sorted by length, through the stage's code.

    python bench/infer_order.py                       # 3,000 Douban test rows, size=tiny
    python bench/infer_order.py --rows 500 --size base --threads 2

A classifier checkpoint (random weights, ``--size``, ``finetune.seq_length=--seq``) is
written once; then ``uer.stages.infer.run`` -- what ``python main.py stage=infer`` runs
after composing the config: read and tokenize the file, load the checkpoint, predict,
write the predictions -- runs on:

* ``file order``: the first ``--rows`` rows of ``--data`` as they are;
* ``pre-sorted``: the same rows, the file sorted by token count;

each with ``uer.tasks.predict`` as stage=infer calls it (examples batched by length,
rows restored to the file's order) and as it ran before that (``by_length=False``:
batches in the file's order, the ``old path``).  Variants alternate for ``--repeats``
rounds, so a busy machine slows all alike.  Printed per variant: the median seconds of
the whole stage and of its ``predict`` call, then the ratios; then a check that the
file-order predictions of both paths agree (labels equal, largest logit difference).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uer.finetuning import setup as finetune  # noqa: E402
from uer.io.checkpoint import save_checkpoint  # noqa: E402
from uer.stages import infer as infer_stage  # noqa: E402
from uer.tasks import predict  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import compose as composed  # noqa: E402  (bench/common.py)
from timing import sync  # noqa: E402  (bench/timing.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000, help="rows from the top of --data")
    parser.add_argument("--batch", type=int, default=64, help="infer.batch_size")
    parser.add_argument("--seq", type=int, default=128, help="finetune.seq_length of the checkpoint")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of every variant (after one untimed)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--data", default=str(ROOT / "datasets" / "douban_book_review" / "test.tsv"))
    args = parser.parse_args()

    common = [f"hardware.num_threads={args.threads}", f"hardware.device={args.device}",
              f"hardware.precision={args.precision}"]
    work = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    header, *lines = Path(args.data).read_text(encoding="utf-8").splitlines()[:args.rows + 1]
    files = {"file order": work / "file_order.tsv", "pre-sorted": work / "sorted.tsv"}
    files["file order"].write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")

    setup = finetune.prepare(composed(["stage=finetune", "task=classifier", f"size={args.size}",
                                       f"finetune.seq_length={args.seq}", *common]))
    data = setup.task.read(files["file order"], split="infer", labels_num=None, skip_bad_rows=False)
    if len(data) != len(lines):
        raise SystemExit(f"{args.data}: {len(lines)} rows read as {len(data)} examples; give a file without bad rows")
    lengths = [setup.task.length(example) for example in data.examples]
    by_length = sorted(range(len(lines)), key=lengths.__getitem__)
    files["pre-sorted"].write_text("\n".join([header, *(lines[i] for i in by_length)]) + "\n", encoding="utf-8")
    setup.task.info["labels_num"] = 2
    checkpoint = work / "model.pt"
    save_checkpoint(checkpoint, model_state=finetune.new_model(setup, 2).state_dict(),
                    config=finetune.checkpoint_config(setup), tokenizer=setup.tokenizer, trainer=None,
                    task_info=dict(setup.task.info))
    print(f"{len(lines)} rows of {args.data}, mean {sum(lengths) / len(lengths):.1f} tokens (max {max(lengths)}), "
          f"size={args.size} infer.batch_size={args.batch} seq_length={args.seq} device={setup.device} "
          f"precision={args.precision} threads={torch.get_num_threads()} torch={torch.__version__}")

    predict_seconds = []

    def prediction(path: Path, bucketed: bool) -> Path:
        return work / f"{path.stem}_{'bucketed' if bucketed else 'old'}_predictions.tsv"

    def timed_predict(*a, by_length: bool, **kw):
        sync(setup.device)
        start = time.perf_counter()
        out = predict(*a, by_length=by_length, **kw)
        predict_seconds.append(time.perf_counter() - start)
        return out

    def run(path: Path, bucketed: bool) -> tuple[float, float]:
        """Seconds of the whole stage and of its predict call."""
        cfg = composed(["stage=infer", f"infer.load_model_path={checkpoint}", f"infer.test_path={path}",
                        f"infer.prediction_path={prediction(path, bucketed)}",
                        f"infer.batch_size={args.batch}", "infer.output_logits=true", *common])
        with mock.patch.object(infer_stage, "predict", functools.partial(timed_predict, by_length=bucketed)):
            start = time.perf_counter()
            infer_stage.run(cfg)
            sync(setup.device)
            return time.perf_counter() - start, predict_seconds[-1]

    variants = {f"{order}{'' if bucketed else ' (old path)'}": (files[order], bucketed)
                for bucketed in (True, False) for order in files}
    times = {name: [] for name in variants}
    for round_ in range(args.repeats + 1):
        for name, (path, bucketed) in variants.items():
            result = run(path, bucketed)
            if round_:
                times[name].append(result)
    median = {name: tuple(statistics.median(t[i] for t in runs) for i in range(2)) for name, runs in times.items()}
    print(f"stage=infer, median of {args.repeats} runs each (seconds: whole stage / its predict call):")
    for name, (stage_s, predict_s) in median.items():
        print(f"  {name:<24} {stage_s:7.2f} s  / {predict_s:7.2f} s  ({len(lines) / stage_s:7.1f} rows/s)")

    def ratio(a: str, b: str) -> str:
        return " / ".join(f"{median[a][i] / median[b][i]:.2f}x" for i in range(2))

    print(f"  file order costs {ratio('file order', 'pre-sorted')} of pre-sorted "
          f"(old path: {ratio('file order (old path)', 'pre-sorted (old path)')})")
    print(f"  file order is {ratio('file order (old path)', 'file order')} faster than the old path")
    agree(prediction(files["file order"], True), prediction(files["file order"], False))


def agree(new: Path, old: Path) -> None:
    """Print whether two prediction files of the same rows agree: labels, and the largest logit difference."""
    rows = [[line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:]] for path in (new, old)]
    labels = sum(a[0] != b[0] for a, b in zip(*rows))
    logits = [torch.tensor([[float(x) for x in row[1].split()] for row in part]) for part in rows]
    print(f"  file order, both paths: {len(rows[0])} rows, {labels} labels differ, largest logit difference "
          f"{(logits[0] - logits[1]).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
