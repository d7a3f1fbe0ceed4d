"""What the speed benches share: the config main.py would compose, the decoding benches' options,
uer's Trainer for a model, the machine's measured matmul rate, and FLOP counts of a transformer step."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from timing import timed  # noqa: E402  (bench/timing.py)

VOCAB = ROOT / "models" / "google_zh_vocab.txt"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compose(overrides: list[str]):
    """The config ``python main.py OVERRIDES`` would run with (the bundled vocabulary by absolute path)."""
    from uer.cli import normalize_overrides
    from uer.composition import compose as compose_config

    cfg = compose_config(normalize_overrides(list(overrides)))
    if "tokenizer" in cfg and "vocab_path" in cfg.tokenizer:
        cfg.tokenizer.vocab_path = str(VOCAB)
    return cfg


def add_decoding_arguments(parser, new_tokens: int) -> None:
    """``--new-tokens``, ``--repeats``, ``--threads`` (one by default: decoding multiplies small matrices, and a
    second thread mostly measures how busy the other core is) and ``--device``; :func:`use_threads` applies
    ``--threads``."""
    parser.add_argument("--new-tokens", type=int, default=new_tokens, help="tokens generated (at most) per row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu")


def use_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def trainer(model, learning_rate: float, *, device: torch.device, precision: str, steps: int = 10_000):
    """uer's Trainer over ``model`` as the stages build it: the default optimizer and schedule groups
    (BERT AdamW groups, fused; linear warm-up/decay over ``steps``), clipping at 1.0, no reports."""
    from uer.training.optim import build_optimizer, build_scheduler
    from uer.training.report import Reporter
    from uer.training.trainer import Trainer

    cfg = compose(["stage=pretrain"])
    optimizer = build_optimizer(cfg.optimizer, model, learning_rate)
    return Trainer(model, optimizer, build_scheduler(cfg.lr_scheduler, optimizer, steps), device=device,
                   precision=precision, accumulation_steps=1, max_grad_norm=1.0,
                   reporter=Reporter(None, steps, enabled=False))


def matmul_rate(precision: str, device: torch.device, n: int | None = None, reps: int = 3) -> float:
    """FLOP/s of an n x n matmul in ``precision`` on ``device`` (best of ``reps``): the machine's attainable peak."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(n, n, device=device, dtype=DTYPES[precision]) for _ in range(2))
    a @ b
    return 2 * n**3 / min(timed(device, lambda: a @ b) for _ in range(reps))


class MatmulRates:
    """Matmul rates sampled between a bench's rounds, so they see the machine as the models did."""

    def __init__(self, precisions, device: torch.device):
        self.device = device
        self.samples = {p: [] for p in precisions}

    def sample(self) -> None:
        for precision, values in self.samples.items():
            values.append(matmul_rate(precision, self.device))

    def median(self, precision: str) -> float:
        return statistics.median(self.samples[precision])


def transformer_flops(size: dict, batch: int, length: int, predicted: int, vocab_size: int) -> float:
    """Forward + backward (3x forward) matmul FLOPs of a BERT encoder on (batch, length) (projections,
    feed-forward, attention scores and mixing) and a head of an H x H layer and an H x ``vocab_size`` one
    on ``predicted`` vectors: the MLM head on the masked positions (``vocab_size`` the vocabulary), or a
    classifier's pooler and output layer on one pooled vector a row (``vocab_size`` the labels)."""
    h, f, layers = size["hidden_size"], size["feedforward_size"], size["layers_num"]
    tokens = batch * length
    per_layer = 2 * tokens * (4 * h * h + 2 * h * f) + 2 * 2 * batch * length * length * h
    head = 2 * predicted * (h * h + h * vocab_size)
    return 3 * (layers * per_layer + head)
