"""hardware.strategy=fsdp fine-tuning on CPU with gloo, two processes, on an encoder-decoder (task=text2text, whose
dev evaluations generate): DDP's losses and dev scores, best.pt/last.pt holding the full model in the usual single
file (stage=infer reads it), the optimizer shards beside last.pt, early stopping on every rank at once, a
bit-identical resume; every other kind of task's model sharded in one process; and what it refuses, before any
worker starts."""

import json
import random
import shutil

import pytest
import torch

from uer.app import run_stage
from uer.errors import UerError
from uer.finetuning.loop import resumable_checkpoint
from uer.finetuning.setup import run_task
from uer.io.checkpoint import load_checkpoint
from uer.tasks import build_task_model
from uer.tokenizers import build_tokenizer
from uer.training import fsdp
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, plain_and_sharded_losses

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("error:FSDP2-wrapped module:UserWarning")]

STEPS = 4
SYMBOLS = "一二三四"


@pytest.fixture(scope="module")
def copy_task(tmp_path_factory):
    """A vocabulary of four symbols and a copy task over strings of them: 64 training rows, 8 dev rows."""
    directory = tmp_path_factory.mktemp("copy")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SYMBOLS]) + "\n", encoding="utf-8")
    generator = random.Random(0)
    for name, rows in (("train", 64), ("dev", 8)):
        strings = ["".join(generator.choice(SYMBOLS) for _ in range(generator.randint(2, 5))) for _ in range(rows)]
        (directory / f"{name}.tsv").write_text("source\ttarget\n" + "".join(f"{s}\t{s}\n" for s in strings),
                                               encoding="utf-8")
    return directory


def finetune(data, out, strategy, *extra):
    """Two ranks of 4 rows each, dropout on, clipping on (the default), a dev evaluation after every step."""
    run_stage(compose_config([
        "task=text2text", "size=tiny", *SMALL, "model.dropout=0.1", "model.max_seq_length=16",
        "finetune.seq_length=16", *copy_task_files(data), f"finetune.max_steps={STEPS}", "finetune.batch_size=4",
        "finetune.eval_every_steps=1", "finetune.learning_rate=3e-3", "finetune.metric=exact_match",
        "finetune.report_steps=1", "hardware.nproc_per_node=2", "hardware.num_threads=1", "logger=csv",
        f"hardware.strategy={strategy}", f"output_model_path={out}", *extra]))
    return out


def copy_task_files(data) -> list[str]:
    return [f"tokenizer.vocab_path={data / 'vocab.txt'}", f"finetune.train_path={data / 'train.tsv'}",
            f"finetune.dev_path={data / 'dev.tsv'}"]


def resuming(data, out, strategy):
    """The config of two ranks resuming ``out`` (checked before any worker starts)."""
    return compose_config(["task=text2text", "size=tiny", *SMALL, *copy_task_files(data), "hardware.nproc_per_node=2",
                           f"hardware.strategy={strategy}", "resume=true", f"output_model_path={out}"])


def records(out, name):
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, copy_task):
    """The same fine-tuning under ddp and fsdp (which also scores dev.tsv as its test set at the end, with its best
    model)."""
    root = tmp_path_factory.mktemp("runs")
    return {"ddp": finetune(copy_task, root / "ddp", "ddp"),
            "fsdp": finetune(copy_task, root / "fsdp", "fsdp", f"finetune.test_path={copy_task / 'dev.tsv'}")}


def test_fsdp_fine_tunes_as_ddp_into_single_file_checkpoints(runs, copy_task, tmp_path):
    """Within fp tolerance, not bit for bit (gradients are reduce-scattered into shards instead of all-reduced);
    every evaluation, on the full model, scores as DDP's."""
    sharded, ddp = runs["fsdp"], runs["ddp"]
    losses = [[record["seq2seq_loss"] for record in records(out, "metrics.jsonl")] for out in (sharded, ddp)]
    assert len(losses[0]) == STEPS
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=0)
    dev = [[{key: record[key] for key in ("step", "exact_match", "bleu")} for record in records(out, "results.jsonl")
            if record["split"] == "dev"] for out in (sharded, ddp)]
    assert [record["step"] for record in dev[0]] == [1, 2, 3, 4] and dev[0] == dev[1]
    assert [record["split"] for record in records(sharded, "results.jsonl")][-1] == "test"
    for name in ("best.pt", "last.pt"):
        mine, theirs = load_checkpoint(sharded / name), load_checkpoint(ddp / name)
        assert mine["model"].keys() == theirs["model"].keys()
        for key, tensor in mine["model"].items():
            assert type(tensor) is torch.Tensor and tensor.device.type == "cpu", key  # no DTensor
            torch.testing.assert_close(tensor, theirs["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    record = load_checkpoint(sharded / "last.pt")["trainer"]["optimizer"]
    assert record["shards"] == f"last.step_{STEPS}.optim"
    assert sorted(record["sha256"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert sorted(path.name for path in sharded.glob("last.*")) == ["last.pt", f"last.step_{STEPS}.optim"]
    predictions = tmp_path / "predictions.tsv"  # stage=infer reads best.pt as any checkpoint
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={sharded}", "hardware.num_threads=1",
                              f"infer.test_path={copy_task / 'dev.tsv'}", f"infer.prediction_path={predictions}"]))
    assert len(predictions.read_text(encoding="utf-8").splitlines()) == 1 + 8


def test_fsdp_fine_tuning_stopped_early_resumes_bit_identically(runs, copy_task, tmp_path):
    """Early stopping ends the run on both ranks at once (the ranks take rank 0's scores); resumed from its
    last.pt and optimizer shards, it ends with exactly the uninterrupted sharded run's weights."""
    split = finetune(copy_task, tmp_path / "split", "fsdp", "finetune.early_stopping_patience=1")
    stopped = load_checkpoint(split / "last.pt")["trainer"]["step"]
    assert stopped < STEPS, stopped
    assert (split / f"last.step_{stopped}.optim").is_dir()
    finetune(copy_task, split, "fsdp", "resume=true", "resume_allow_changes=[finetune.early_stopping_patience]")
    for name in ("best.pt", "last.pt"):
        whole, resumed = load_checkpoint(runs["fsdp"] / name), load_checkpoint(split / name)
        for key in whole["model"]:
            assert torch.equal(whole["model"][key], resumed["model"][key]), (name, key)
    assert load_checkpoint(split / "last.pt")["trainer"]["step"] == STEPS
    assert sorted(path.name for path in split.glob("last.*")) == ["last.pt", f"last.step_{STEPS}.optim"]


def test_a_last_pt_whose_shards_are_damaged_is_refused_before_any_worker(runs, copy_task, tmp_path, capsys):
    out = shutil.copytree(runs["fsdp"], tmp_path / "model")
    shard = out / f"last.step_{STEPS}.optim" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(UerError, match=r"last\.pt cannot be resumed: its optimizer shards .* do not match"):
        resumable_checkpoint(out / "last.pt")
    expect_user_error(capsys, resuming(copy_task, out, "fsdp"), "last.pt cannot be resumed", "__1_0.distcp")


@pytest.mark.parametrize("run, strategy, fragment", [
    ("fsdp", "ddp", "was written by a run with hardware.strategy=fsdp (its optimizer state is sharded); resume it "
                    "with hardware.strategy=fsdp"),
    ("ddp", "fsdp", "was written by a run without hardware.strategy=fsdp"),
])
def test_a_last_pt_resumes_only_under_its_own_strategy(runs, copy_task, tmp_path, capsys, run, strategy, fragment):
    out = shutil.copytree(runs[run], tmp_path / "model")
    expect_user_error(capsys, resuming(copy_task, out, strategy), fragment)


@pytest.mark.parametrize("task, option, fragment", [
    ("classifier", "hardware.nproc_per_node=1", "1 process shards nothing"),
    ("classifier", "hardware.precision=fp16", "hardware.precision=fp16"),
    ("classifier", "hardware.compile=true", "hardware.compile=true"),
    ("classifier_cv", "hardware.nnodes=1",
     "task=classifier_cv runs in one process; drop hardware.nproc_per_node/nnodes and hardware.strategy=fsdp"),
])
def test_what_fsdp_fine_tuning_cannot_do_is_one_line_before_any_worker(tmp_path, capsys, task, option, fragment):
    data = ROOT / "datasets/test_data/book_review"
    cfg = compose_config([f"task={task}", "size=tiny", *SMALL, f"finetune.train_path={data}/train.tsv",
                          f"finetune.dev_path={data}/dev.tsv", "hardware.strategy=fsdp", "hardware.nproc_per_node=2",
                          option, f"output_model_path={tmp_path / 'm'}"])
    expect_user_error(capsys, cfg, fragment)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("task, data, options", [
    ("classifier", "book_review/train.tsv", []),
    ("ner", "msra_ner/train.tsv", ["task.crf=true"]),
    ("cmrc", "cmrc/train.json", []),
    ("c3", "c3/train.json", []),
])
def test_each_task_s_model_trains_sharded_and_scores_in_its_unsharded_copy(one_rank_group, task, data, options):
    """The tasks' heads (a CRF's transitions, a span scorer, a choice scorer) sit in the root FSDP unit: two steps
    sharded give the unsharded losses, and the unsharded copy holding the full weights predicts as the model."""
    cfg = compose_config([f"task={task}", "size=tiny", *SMALL, "model.dropout=0.0", "finetune.seq_length=64",
                          *options])
    made = run_task(cfg, build_tokenizer(cfg.tokenizer))
    rows = made.read(ROOT / "datasets/test_data" / data, split="train", labels_num=made.configured_labels_num,
                     skip_bad_rows=False)
    labels_num = made.configured_labels_num or made.labels_num_from(rows)
    batch = made.collate(rows.examples[:4])
    torch.manual_seed(0)
    plain = build_task_model(made, cfg, labels_num)
    plain_losses, sharded_losses, sharded = plain_and_sharded_losses(plain, batch, steps=2)
    torch.testing.assert_close(sharded_losses, plain_losses, rtol=1e-5, atol=0)
    scored = fsdp.unsharded(sharded, fsdp.full_model_state(sharded, every_rank=True))
    assert not fsdp.is_sharded(scored)
    with torch.no_grad():
        torch.testing.assert_close(scored.eval().predict(batch), plain.eval().predict(batch), rtol=1e-4, atol=1e-5)


def test_bf16_fine_tuning_computes_in_bf16_and_keeps_fp32_weights(one_rank_group):
    """hardware.precision=bf16 is pre-training's policy: bf16 parameters in forward and backward, the fp32 shards
    updated; the unsharded copy scores fp32 weights (under autocast, as DDP's model)."""
    cfg = compose_config(["task=classifier", "size=tiny", *SMALL, "model.dropout=0.0", "finetune.seq_length=64"])
    made = run_task(cfg, build_tokenizer(cfg.tokenizer))
    rows = made.read(ROOT / "datasets/test_data/book_review/train.tsv", split="train", labels_num=None,
                     skip_bad_rows=False)
    batch = made.collate(rows.examples[:8])
    torch.manual_seed(0)
    sharded = fsdp.shard(build_task_model(made, cfg, 2), "bf16", torch.device("cpu"))
    optimizer = torch.optim.AdamW(sharded.parameters(), lr=1e-3)
    computed = []
    layer = next(module for module in sharded.modules() if isinstance(module, fsdp.LAYERS))
    layer.register_forward_hook(lambda module, inputs, output: computed.append(output.dtype))
    out = sharded(batch)
    out.loss.backward()
    optimizer.step()
    assert torch.isfinite(out.loss) and computed == [torch.bfloat16]
    assert {parameter.dtype for parameter in sharded.parameters()} == {torch.float32}
    state = fsdp.full_model_state(sharded, every_rank=True)
    assert {tensor.dtype for tensor in state.values() if tensor.is_floating_point()} == {torch.float32}
