"""The device paths a GPU run takes -- fused attention, dropout, autocast and the gradient scaler, batches
from data workers -- on every device this machine has: always the CPU, and CUDA where one is visible
(bench/gpu.sh runs this file on a GPU).  Parametrised by device rather than skipped, so a change of the
APIs these paths use fails here on a CPU-only machine instead of on the first GPU run."""

import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import uer

from uer.data.build import build_pretrain_dataset
from uer.data.prefetch import BatchSource
from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.models import build_model
from uer.models.dropout import attention, dropout
from uer.tokenizers import build_tokenizer
from uer.training.optim import build_optimizer
from uer.training.report import Reporter
from uer.training.trainer import Trainer
from uer_testing import ROOT, SMALL, VOCAB, compose_config

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
VOCAB_SIZE = 120


def tiny_bert(dropout_rate: float = 0.1):
    cfg = compose_config(["stage=pretrain", "encoder=bert", "target=mlm", *SMALL, "model.max_seq_length=64",
                          f"model.dropout={dropout_rate}"])
    torch.manual_seed(0)
    return build_model(cfg.embedding, cfg.encoder, cfg.target, VOCAB_SIZE), cfg


def batch(device, rows: int = 4, length: int = 24) -> dict:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, VOCAB_SIZE, (rows, length), generator=g)
    src[0, length // 2:] = 0  # a padded row
    seg = (src != 0).long()
    positions = torch.tensor([1, 3, length + 2, 2 * length + 5])
    out = {"src": src, "seg": seg, "mlm_positions": positions, "mlm_labels": src.view(-1)[positions]}
    return {key: value.to(device) for key, value in out.items()}


@pytest.mark.parametrize("device", DEVICES)
def test_eval_forward_on_the_device_matches_cpu(device):
    model, _ = tiny_bert()
    model.eval()
    expected = model(batch("cpu")).loss
    got = model.to(device)(batch(device)).loss
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_is_sdpa_with_and_without_dropout(device):
    q, k, v = (torch.randn(2, 4, 16, 8, device=device, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 16, dtype=torch.bool, device=device)
    mask[0, ..., 10:] = False
    torch.testing.assert_close(attention(q, k, v, mask, False, 0.0),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out = attention(q, k, v, mask, False, 0.5)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_drops_p_and_scales(device):
    x = torch.rand(1_000_000, device=device) + 0.5
    y = dropout(x, 0.1, training=True)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.002
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.9)


@pytest.mark.parametrize("device, precision", [(device, precision) for device in DEVICES
                                               for precision in ("fp32", "bf16", "fp16")
                                               if not (device == "cpu" and precision == "fp16")])
def test_trainer_steps_lower_the_loss(device, precision):
    """fp16 needs the gradient scaler, which only CUDA runs with (hardware.precision=fp16 is a GPU setting)."""
    device = torch.device(device)
    model, cfg = tiny_bert(0.0)
    model.to(device)
    optimizer = build_optimizer(cfg.optimizer, model, 1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(model, optimizer, scheduler, device=device, precision=precision, accumulation_steps=1,
                      max_grad_norm=1.0, reporter=Reporter(None, 30, enabled=False, reduce_device=device))
    data = batch("cpu")
    with torch.no_grad():
        before = model(batch(device)).loss.item()
    for _ in range(30):
        trainer.train_step([data])
    trainer.check_finite()
    with torch.no_grad():
        after = model(batch(device)).loss.item()
    assert after < before - 0.5, (before, after)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


@pytest.mark.parametrize("device", DEVICES)
def test_batches_from_workers_reach_the_device_as_built_in_process(tmp_path, device):
    """Pinned where the device is CUDA (pinning needs it), so the copy to the GPU can overlap the step."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:40]),
                      encoding="utf-8")
    tokenizer = build_tokenizer({"type": "bert", "vocab_path": str(VOCAB)})
    build_pretrain_dataset(corpus, tmp_path / "data", tokenizer, "mlm", seq_length=32, dynamic_masking=True)
    dataset = PretrainDataset(tmp_path / "data")
    pinned = device == "cuda"
    source = BatchSource(dataset, EpochSampler(len(dataset), 4, 3), 3, workers=1, pin_memory=pinned)
    try:
        got = source.next_batch()
    finally:
        source.close()
    expected = BatchSource(dataset, EpochSampler(len(dataset), 4, 3), 3).next_batch()
    assert got["src"].is_pinned() == pinned
    for key in expected:
        assert torch.equal(got[key].to(device, non_blocking=pinned).cpu(), expected[key])


class HostReads(TorchFunctionMode):
    """The places in uer's code that read a tensor's value on the host, or copy a Python number to the device:
    on a GPU each makes the CPU wait until the work queued before it is done."""

    READS = (torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
             torch.Tensor.tolist)
    PACKAGE = str(Path(uer.__file__).parent)

    def __init__(self):
        super().__init__()
        self.places = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.READS or (func is torch.tensor and "device" in kwargs):
            self.places.append(next(frame.name for frame in reversed(traceback.extract_stack())
                                    if frame.filename.startswith(self.PACKAGE)))
        return func(*args, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_a_training_step_waits_for_the_device_only_to_tell_whether_a_batch_is_padded(device):
    """Loss counts, token counts and finiteness stay on the device until a report; what remains is the
    encoder's check for a batch without padding (which lets SDPA run its fused kernels without a mask)."""
    device = torch.device(device)
    model, cfg = tiny_bert()
    model.to(device)
    optimizer = build_optimizer(cfg.optimizer, model, 1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(model, optimizer, scheduler, device=device, precision="fp32", accumulation_steps=2,
                      max_grad_norm=1.0, reporter=Reporter(None, 30, enabled=False, reduce_device=device))
    trainer.train_step([batch("cpu")])  # warm-up: lazily built state (optimizer moments)
    reads = HostReads()
    with reads:
        trainer.train_step([batch("cpu"), batch("cpu")])
    # on CPU a read costs no wait: the finiteness check, and clipping's test of the norm against the limit
    per_step = {"check_finite", "clip_gradients"} if device.type == "cpu" else set()
    assert set(reads.places) - per_step == {"unpadded"}
    assert reads.places.count("unpadded") == 2  # once per micro-batch
