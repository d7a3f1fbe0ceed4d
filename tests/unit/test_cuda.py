"""What only a CUDA device can check: the fused attention path, autocast and the gradient scaler on
the GPU, pinned batches.  Skipped where no CUDA device is visible; bench/gpu.sh runs them on one."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from uer.models import build_model
from uer.models.dropout import attention, dropout
from uer.training.optim import build_optimizer
from uer.training.report import Reporter
from uer.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu.sh)")

CUDA = torch.device("cuda")
VOCAB = 120


def tiny_bert(dropout_rate: float = 0.1):
    emb = SimpleNamespace(type="word_pos_seg", emb_size=32, max_seq_length=64, dropout=dropout_rate,
                          layernorm_eps=1e-12)
    enc = SimpleNamespace(type="transformer", mask="fully_visible", hidden_size=32, feedforward_size=64, heads_num=4,
                          layers_num=2, dropout=dropout_rate, hidden_act="gelu", parameter_sharing=False,
                          layernorm_eps=1e-12)
    torch.manual_seed(0)
    return build_model(emb, enc, SimpleNamespace(type="mlm", tie_weights=True), VOCAB)


def batch(device, rows: int = 4, length: int = 24) -> dict:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, VOCAB, (rows, length), generator=g)
    src[0, length // 2:] = 0  # a padded row
    seg = (src != 0).long()
    positions = torch.tensor([1, 3, length + 2, 2 * length + 5])
    out = {"src": src, "seg": seg, "mlm_positions": positions, "mlm_labels": src.view(-1)[positions]}
    return {key: value.to(device) for key, value in out.items()}


def test_eval_forward_on_cuda_matches_cpu():
    model = tiny_bert().eval()
    expected = model(batch("cpu")).loss
    got = model.to(CUDA)(batch(CUDA)).loss
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-4)


def test_attention_on_cuda_is_sdpa_with_and_without_dropout():
    q, k, v = (torch.randn(2, 4, 16, 8, device=CUDA, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 16, dtype=torch.bool, device=CUDA)
    mask[0, ..., 10:] = False
    torch.testing.assert_close(attention(q, k, v, mask, False, 0.0),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out = attention(q, k, v, mask, False, 0.5)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_dropout_on_cuda_drops_p_and_scales():
    x = torch.rand(1_000_000, device=CUDA) + 0.5
    y = dropout(x, 0.1, training=True)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.002
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.9)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trainer_steps_on_cuda_lower_the_loss(precision):
    model = tiny_bert(0.0).to(CUDA)
    optimizer = build_optimizer(model, 1e-3, 0.0, 1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainer = Trainer(model, optimizer, scheduler, device=CUDA, precision=precision, accumulation_steps=1,
                      max_grad_norm=1.0, reporter=Reporter(None, 30, enabled=False))
    data = batch("cpu")
    with torch.no_grad():
        before = model(batch(CUDA)).loss.item()
    for _ in range(30):
        trainer.train_step([data])
    with torch.no_grad():
        after = model(batch(CUDA)).loss.item()
    assert after < before - 0.5, (before, after)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


def test_pinned_batches_from_workers_reach_the_gpu(tmp_path):
    from uer.data.build import build_pretrain_dataset
    from uer.data.prefetch import BatchSource
    from uer.data.pretrain_dataset import PretrainDataset
    from uer.data.sampler import EpochSampler
    from uer.tokenizers import build_tokenizer
    from uer_testing import ROOT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:40]),
                      encoding="utf-8")
    tok = build_tokenizer(type="bert", vocab_path=str(ROOT / "models/google_zh_vocab.txt"))
    build_pretrain_dataset(corpus, tmp_path / "data", tok, "mlm", seq_length=32, dynamic_masking=True)
    dataset = PretrainDataset(tmp_path / "data")
    source = BatchSource(dataset, EpochSampler(len(dataset), 4, 3), 3, workers=1, pin_memory=True)
    try:
        got = source.next_batch()
    finally:
        source.close()
    expected = BatchSource(dataset, EpochSampler(len(dataset), 4, 3), 3).next_batch()
    assert got["src"].is_pinned()
    for key in expected:
        assert torch.equal(got[key].to(CUDA, non_blocking=True).cpu(), expected[key])
