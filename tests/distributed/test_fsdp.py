"""hardware.strategy=fsdp on CPU with gloo, two processes: the same training as DDP, sharded optimizer state
beside a single-file step_N.pt, a bit-identical resume, and what it refuses."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from uer.app import run_stage
from uer.data.pretrain_dataset import PretrainDataset
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.models import build_model
from uer.stages.pretrain import _newest_resumable
from uer.training import fsdp
from uer.training.report import Reporter
from uer.training.trainer import Trainer
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, plain_and_sharded_losses

# A sharded layer whose output is a view (FSDP2 warns: an in-place operation on it would drop its backward hook).
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("error:FSDP2-wrapped module:UserWarning")]

STEPS = 4
TIED = ("backbone.embedding.word_embedding.weight", "target.mlm_linear_2.weight")  # target=mlm ties them


@pytest.fixture(scope="module")
def dev_data(tmp_path_factory):
    """5 held-out lines (13 instances), as mlm_data was built: rank 0 scores 4 batches of 2, rank 1 three."""
    directory = tmp_path_factory.mktemp("dev")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[300:305])
                      + "\n", encoding="utf-8")
    run_stage(compose_config(["stage=preprocess", "target=mlm", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={directory / 'data'}", "preprocess.seq_length=32",
                              "preprocess.dynamic_masking=true"]))
    assert len(PretrainDataset(directory / "data")) == 13
    return directory / "data"


def pretrain(data, out, strategy, *extra):
    """Two ranks, two micro-batches per step (gradient accumulation), dropout on, clipping on (the default),
    the held-out set scored every 2 steps."""
    train, dev = data
    run_stage(compose_config(["stage=pretrain", "size=tiny", *SMALL, "model.dropout=0.1",
                              f"pretrain.dataset_path={train}", f"pretrain.dev_dataset_path={dev}",
                              "pretrain.eval_steps=2",
                              f"pretrain.total_steps={STEPS}", "pretrain.report_steps=1", "pretrain.batch_size=2",
                              "pretrain.accumulation_steps=2", "pretrain.learning_rate=1e-3",
                              "pretrain.save_checkpoint_steps=2", "hardware.nproc_per_node=2", "hardware.num_threads=1",
                              "logger=csv", f"hardware.strategy={strategy}", f"output_model_path={out}", *extra]))
    return out


def last_checkpoint(out):
    return load_checkpoint(out / f"step_{STEPS}.pt")


def losses(out):
    """The training loss of every step and the held-out loss of every evaluation, in order."""
    return [json.loads(line)["mlm_loss"] for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(mlm_data, dev_data):
    return mlm_data, dev_data


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("fsdp") / "model"
    return out, last_checkpoint(pretrain(data, out, "fsdp"))


def test_fsdp_trains_as_ddp_and_writes_a_single_file_checkpoint(tmp_path, data, fsdp_run):
    """Within fp tolerance, not bit for bit: the ranks' gradients are reduce-scattered into shards instead of
    all-reduced, and the clipping norm is summed from the shards' partial norms, in other orders."""
    out, sharded = fsdp_run
    ddp = last_checkpoint(pretrain(data, tmp_path / "ddp", "ddp"))
    assert len(losses(out)) == STEPS + 2  # held-out scores at steps 2 and 4
    torch.testing.assert_close(losses(out), losses(tmp_path / "ddp"), rtol=1e-5, atol=0)
    assert sharded["model"].keys() == ddp["model"].keys()
    for key in ddp["model"]:
        torch.testing.assert_close(sharded["model"][key], ddp["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    assert torch.equal(sharded["model"][TIED[0]], sharded["model"][TIED[1]])  # still one parameter
    record = sharded["trainer"]["optimizer"]
    assert record["shards"] == f"step_{STEPS}.optim" and (out / record["shards"]).is_dir()
    assert sorted(record["sha256"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert isinstance(ddp["trainer"]["optimizer"]["state"], dict)  # DDP's stays in the one file


def test_fsdp_resumes_from_sharded_checkpoint_bit_identically(tmp_path, data, fsdp_run):
    whole = fsdp_run[1]
    split = pretrain(data, tmp_path / "split", "fsdp", f"pretrain.stop_after_steps={STEPS // 2}")
    assert sorted(path.name for path in split.glob("step_*")) == ["step_2.optim", "step_2.pt"]
    resumed = last_checkpoint(pretrain(data, split, "fsdp", "resume=true", "pretrain.keep_checkpoints=1"))
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], resumed["model"][key]), key
    assert resumed["trainer"]["step"] == STEPS
    assert sorted(path.name for path in split.glob("step_*")) == ["step_4.optim", "step_4.pt"]  # shards go too


def test_resuming_skips_a_checkpoint_whose_optimizer_shards_were_damaged(tmp_path, fsdp_run, caplog):
    out, sharded = fsdp_run
    copied = shutil.copytree(out, tmp_path / "model")
    with open(copied / "step_4.optim" / "__1_0.distcp", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UerError, match=r"step_4\.optim do not match the checksums it recorded \(__1_0\.distcp "):
        fsdp.check_shards(copied / "step_4.pt", sharded["trainer"]["optimizer"])
    payload, path = _newest_resumable(SimpleNamespace(resume=True), copied)
    assert path.name == "step_2.pt" and payload["trainer"]["step"] == 2
    assert "skipped step_4.pt" in caplog.text


@pytest.mark.parametrize("options, fragment", [
    (["hardware.nproc_per_node=1"], "1 process shards nothing"),
    (["hardware.precision=fp16"], "hardware.precision=fp16"),
    (["hardware.compile=true"], "hardware.compile=true"),
    (["hardware.strategy=zero3"], "hardware.strategy=zero3 is not known"),
])
def test_what_fsdp_cannot_do_is_one_line_before_any_worker(tmp_path, capsys, mlm_data, options, fragment):
    cfg = compose_config(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                          "hardware.strategy=fsdp", "hardware.nproc_per_node=2", *options,
                          f"output_model_path={tmp_path / 'm'}"])
    expect_user_error(capsys, cfg, fragment)
    assert not (tmp_path / "m").exists()


def seq2seq_model_and_batch(positioning="post"):
    """A smoke-sized encoder-decoder (dropout off) and one batch for it; ``positioning``: its layers' LayerNorms
    (post: BERT's, BART's; pre: GPT-2's, T5's)."""
    cfg = compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke", "model.dropout=0.0",
                          f"encoder.layernorm_positioning={positioning}",
                          f"decoder.layernorm_positioning={positioning}"])
    cfg.decoder.start_id = 1
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, 40, decoder_cfg=cfg.decoder)
    generator = torch.Generator().manual_seed(3)
    src, tgt = torch.randint(5, 40, (4, 9), generator=generator), torch.randint(5, 40, (4, 7), generator=generator)
    batch = {"src": src, "seg": torch.ones_like(src), "tgt_in": torch.cat([torch.ones(4, 1).long(), tgt[:, :-1]], 1),
             "tgt_out": tgt}
    return model, batch


@pytest.mark.parametrize("positioning", ["post", "pre"])
def test_a_sharded_encoder_decoder_trains_as_the_unsharded_one(one_rank_group, positioning):
    """Each decoder layer is an FSDP unit whose weights exist only inside its forward: the cross-attention's
    keys and values are computed there (outside, FSDP's DTensor weights meet plain tensors and torch refuses).
    Each layer returns a tensor of its own, not a view (the module's warnings filter makes a view fail)."""
    plain, sharded, _ = plain_and_sharded_losses(*seq2seq_model_and_batch(positioning), steps=3)
    assert plain[0] > plain[-1]  # it learns
    torch.testing.assert_close(sharded, plain, rtol=1e-5, atol=0)


def test_a_sharded_model_s_non_finite_loss_and_norm_stop_the_run(tmp_path, one_rank_group):
    """The clipping norm of sharded gradients is a DTensor: the non-finite watch reads it as a plain tensor."""
    model, batch = seq2seq_model_and_batch()
    model = fsdp.shard(model, "fp32", torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                      device=torch.device("cpu"), precision="fp32", accumulation_steps=2, max_grad_norm=1.0,
                      reporter=Reporter(tmp_path, 3, enabled=False))
    assert trainer.sharded and trainer.state_dict()["optimizer"] is None  # the session writes its shards

    def break_a_weight(step):
        with torch.no_grad():
            next(model.parameters()).to_local().fill_(float("nan"))

    with pytest.raises(UerError, match="the loss and the gradient norm became nan or inf at step 2"):
        trainer.fit(lambda: dict(batch), 3, 1, break_a_weight)
