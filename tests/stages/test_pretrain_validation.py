"""Held-out evaluation during pre-training (pretrain.dev_dataset_path): numbers, determinism, best.pt, bad paths."""

import json
import logging
import math
import sys
import types

import numpy as np
import pytest
import torch

from uer.app import run_stage
from uer.data.pretrain_dataset import PretrainDataset
from uer.io.checkpoint import load_checkpoint
from uer.models import build_model
from uer.outcome import outcome, summary_line
from uer.sweep_tables import write_tables
from uer.tokenizers import build_tokenizer
from uer.training.heldout import DEV_EPOCH, DEV_MASK_SEED, HeldOutSet, heldout_numbers
from uer_testing import ROOT, SMALL, VOCAB, compose_config, expect_user_error

pytestmark = pytest.mark.e2e

STEPS = 4


def preprocess(directory, lines, *options, target="mlm", seq_length=32):
    """A dataset of ``lines`` of corpora/book_review.txt (a slice), written by stage=preprocess."""
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8")
                                .splitlines()[lines]) + "\n", encoding="utf-8")
    run_stage(compose_config(["stage=preprocess", f"target={target}", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={directory / 'data'}", f"preprocess.seq_length={seq_length}",
                              *options]))
    return directory / "data"


@pytest.fixture(scope="module")
def dev_data(tmp_path_factory):
    """Lines the training set (mlm_data: the first 300) does not hold, masked dynamically."""
    return preprocess(tmp_path_factory.mktemp("dev"), slice(300, 340), "preprocess.dynamic_masking=true")


def train_cfg(data, out, *extra):
    return compose_config(["stage=pretrain", "size=tiny", *SMALL, "hardware.num_threads=1",
                           f"pretrain.dataset_path={data}", f"pretrain.total_steps={STEPS}", "pretrain.batch_size=8",
                           "pretrain.report_steps=2", "pretrain.save_checkpoint_steps=2", f"output_model_path={out}",
                           *extra])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def heldout_records(run_dir):
    return [r for r in read_jsonl(run_dir / "results.jsonl") if r["split"] == "dev"]


def tensorboard_scalars(log_dir):
    """``{tag: [(step, value), ...]}`` of the event files under ``log_dir``, read without TensorFlow."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def independent_mlm_loss(checkpoint, cfg, dev_data):
    """The checkpoint's mean cross-entropy over every masked token of the dev set, all instances in one batch."""
    tokenizer = build_tokenizer(cfg.tokenizer)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab), tokens=tokenizer.vocab.tokens)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.eval()
    dataset = PretrainDataset(dev_data)
    batch = dataset.batch(np.arange(len(dataset)), DEV_EPOCH, DEV_MASK_SEED)
    with torch.no_grad():
        hidden = model.backbone(batch["src"], batch["seg"])
        target = model.target
        masked = hidden.reshape(-1, hidden.size(-1))[batch["mlm_positions"]]
        logits = target.mlm_linear_2(target.layer_norm(target.act(target.mlm_linear_1(masked))))
        loss = torch.nn.functional.cross_entropy(logits.double(), batch["mlm_labels"])
        accuracy = (logits.argmax(-1) == batch["mlm_labels"]).double().mean()
    return float(loss), float(accuracy)


def test_heldout_numbers_agree_everywhere_and_equal_an_independent_computation(tmp_path, mlm_data, dev_data, caplog):
    out = tmp_path / "m"
    cfg = train_cfg(mlm_data, out, f"pretrain.dev_dataset_path={dev_data}", "pretrain.keep_best=true",
                    "pretrain.learning_rate=1e-2")  # a rate that makes some masked tokens right within 4 steps
    with caplog.at_level(logging.INFO, logger="uer.train"):
        result = run_stage(cfg)
    records = heldout_records(out)  # outside main.py the run directory is the model directory
    assert any(r["mlm_acc"] > 0 for r in records), "precondition: an accuracy worth comparing"
    assert [r["step"] for r in records] == [2, 4]  # at each checkpoint (eval_steps null), the last one the end
    metrics = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("split") == "dev"]
    logged = [m for m in caplog.messages if m.startswith("dev step")]
    assert len(metrics) == len(logged) == 2
    for record, metric, line in zip(records, metrics, logged):
        assert record["metric"] == "loss"
        assert {k: v for k, v in record.items() if k not in ("split", "metric")} == \
               {k: v for k, v in metric.items() if k != "split"}
        assert line == (f"dev step {record['step']}/{STEPS} | loss {record['loss']:.4f} | mlm_loss "
                        f"{record['mlm_loss']:.4f} | mlm_acc {record['mlm_acc']:.4f} | mlm_ppl {record['mlm_ppl']:.4f}")
        loss, accuracy = independent_mlm_loss(out / f"step_{record['step']}.pt", cfg, dev_data)
        assert record["loss"] == record["mlm_loss"] == pytest.approx(loss, rel=1e-5)
        assert record["mlm_acc"] == pytest.approx(accuracy, abs=1e-9)
        assert record["mlm_ppl"] == pytest.approx(math.exp(loss), rel=1e-5)
    logged_scalars = tensorboard_scalars(out / "tensorboard")
    for name in ("loss", "mlm_loss", "mlm_acc", "mlm_ppl"):
        assert logged_scalars[f"dev/{name}"] == [(r["step"], pytest.approx(r[name], rel=1e-6)) for r in records]
    best = min(records, key=lambda r: r["loss"])
    assert result == best["loss"]
    facts = outcome(cfg, result, out)
    assert facts["metric"] == "dev loss" and facts["dev"]["loss"] == best["loss"] and not facts["higher_is_better"]
    assert facts["checkpoint"] == str(out / "best.pt")
    line = summary_line("pretrain", facts, 1)
    assert f"| best held-out (step {best['step']}) loss {best['loss']:.4f} mlm_loss" in line
    kept, at_step = load_checkpoint(out / "best.pt"), load_checkpoint(out / f"step_{best['step']}.pt")
    assert kept["trainer"]["step"] == best["step"]
    for name, weights in at_step["model"].items():
        assert torch.equal(kept["model"][name], weights), name


def test_a_sentence_head_gets_loss_and_accuracy_and_the_token_parts_perplexity():
    """bert: the loss is the sum of the parts' as in training; exp of the 2-way nsp loss is no perplexity."""
    numbers = heldout_numbers({"mlm_loss": (20.0, 10.0), "mlm_acc": (3.0, 10.0), "nsp_loss": (1.4, 2.0),
                               "nsp_acc": (1.0, 2.0)})
    assert numbers == pytest.approx({"loss": 2.7, "mlm_loss": 2.0, "mlm_acc": 0.3, "mlm_ppl": math.exp(2.0),
                                     "nsp_loss": 0.7, "nsp_acc": 0.5})


def test_bert_held_out_is_scored_for_both_heads(tmp_path):
    """Through the whole run: nsp gets loss and accuracy, mlm its perplexity too, the loss is their sum."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora" / "book_review_bert.txt").read_text(encoding="utf-8")
                                .splitlines()[:120]) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    run_stage(compose_config(["stage=preprocess", "target=bert", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={data}", "preprocess.seq_length=32"]))
    out = tmp_path / "m"
    run_stage(train_cfg(data, out, "target=bert", f"pretrain.dev_dataset_path={corpus}", "pretrain.total_steps=1"))
    [record] = heldout_records(out)
    assert set(record) == {"split", "step", "metric", "loss", "mlm_loss", "mlm_acc", "mlm_ppl", "nsp_loss", "nsp_acc"}
    assert record["loss"] == pytest.approx(record["mlm_loss"] + record["nsp_loss"])


def test_ranks_score_disjoint_shards_that_cover_the_dev_set(dev_data):
    dataset = PretrainDataset(dev_data)
    shards = [np.concatenate(HeldOutSet(dataset, 8, rank=rank, world_size=3, device=torch.device("cpu")).batches)
              for rank in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(dataset)))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_validation_leaves_training_bit_identical(tmp_path, mlm_data, dev_data):
    """Dropout on (size=tiny: 0.1), a held-out evaluation after every step: the same weights as without."""
    run_stage(train_cfg(mlm_data, tmp_path / "plain"))
    run_stage(train_cfg(mlm_data, tmp_path / "validated", f"pretrain.dev_dataset_path={dev_data}",
                        "pretrain.eval_steps=1"))
    assert [r["step"] for r in heldout_records(tmp_path / "validated")] == [1, 2, 3, 4]
    plain = load_checkpoint(tmp_path / "plain" / f"step_{STEPS}.pt")
    validated = load_checkpoint(tmp_path / "validated" / f"step_{STEPS}.pt")
    for name, weights in plain["model"].items():
        assert torch.equal(validated["model"][name], weights), name


def test_resumed_run_reports_the_uninterrupted_numbers(tmp_path, mlm_data, dev_data, monkeypatch):
    dev = f"pretrain.dev_dataset_path={dev_data}"
    run_stage(train_cfg(mlm_data, tmp_path / "whole", dev))
    run_stage(train_cfg(mlm_data, tmp_path / "split", dev, "pretrain.stop_after_steps=2"))
    monkeypatch.setenv("UER_RUN_DIR", str(tmp_path / "second_run"))  # a resumed run has a run directory of its own
    run_stage(train_cfg(mlm_data, tmp_path / "split", dev, "resume=true"))
    assert heldout_records(tmp_path / "second_run") == heldout_records(tmp_path / "whole")


def test_resumed_run_with_another_dev_set_starts_its_best_afresh(tmp_path, mlm_data, dev_data, monkeypatch, caplog):
    run_stage(train_cfg(mlm_data, tmp_path / "m", f"pretrain.dev_dataset_path={dev_data}", "pretrain.keep_best=true",
                        "pretrain.stop_after_steps=2"))
    monkeypatch.setenv("UER_RUN_DIR", str(tmp_path / "second_run"))
    with caplog.at_level(logging.WARNING, logger="uer.train"):
        run_stage(train_cfg(mlm_data, tmp_path / "m", f"pretrain.dev_dataset_path={mlm_data}",
                            "pretrain.keep_best=true", "resume=true"))
    assert any("not carried over" in message for message in caplog.messages)
    assert [r["step"] for r in heldout_records(tmp_path / "second_run")] == [4]
    assert load_checkpoint(tmp_path / "m" / "best.pt")["trainer"]["step"] == 4


def test_a_heldout_corpus_is_preprocessed_as_the_training_dataset_was(tmp_path, mlm_data, dev_data):
    """dev_data is lines 300-340 preprocessed with mlm_data's options: the corpus file gives the same batches."""
    out = tmp_path / "m"
    run_stage(train_cfg(mlm_data, out, f"pretrain.dev_dataset_path={dev_data.parent / 'corpus.txt'}",
                        "pretrain.total_steps=1"))
    built, expected = PretrainDataset(out / "heldout_dataset"), PretrainDataset(dev_data)
    assert len(built) == len(expected)
    everything = np.arange(len(expected))
    for name, value in expected.batch(everything, DEV_EPOCH, DEV_MASK_SEED).items():
        assert torch.equal(built.batch(everything, DEV_EPOCH, DEV_MASK_SEED)[name], value), name
    assert [r["step"] for r in heldout_records(out)] == [1]


def test_a_heldout_corpus_gets_the_whole_word_masking_of_the_training_dataset(tmp_path):
    wwm = ("preprocess.whole_word_masking=true", "preprocess.word_segmenter=whitespace")
    for name in ("train", "dev"):
        (tmp_path / name).mkdir()
    train = preprocess(tmp_path / "train", slice(0, 60), *wwm)
    expected = PretrainDataset(preprocess(tmp_path / "dev", slice(300, 320), *wwm))
    out = tmp_path / "m"
    run_stage(train_cfg(train, out, f"pretrain.dev_dataset_path={tmp_path / 'dev' / 'corpus.txt'}",
                        "pretrain.total_steps=1"))
    built = PretrainDataset(out / "heldout_dataset")
    assert built.meta["word_segmentation"] == expected.meta["word_segmentation"] == {"segmenter": "whitespace"}
    everything = np.arange(len(expected))
    for name, value in expected.batch(everything, DEV_EPOCH, DEV_MASK_SEED).items():
        assert torch.equal(built.batch(everything, DEV_EPOCH, DEV_MASK_SEED)[name], value), name


def test_a_pretraining_sweep_ranks_its_jobs_by_heldout_loss(tmp_path):
    """Two jobs as they leave their run directories: the one with the lower training loss but the higher
    held-out loss is not the best."""
    rows = []
    for job, (train_loss, heldout_losses) in enumerate([(2.0, [5.0, 4.0]), (3.0, [4.5, 3.5])]):
        run_dir = tmp_path / f"job{job}"
        run_dir.mkdir()
        (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 2, "mlm_loss": train_loss}) + "\n")
        (run_dir / "results.jsonl").write_text("".join(
            json.dumps({"split": "dev", "step": step, "metric": "loss", "loss": loss, "mlm_loss": loss}) + "\n"
            for step, loss in zip((1, 2), heldout_losses)))
        cfg = compose_config(["stage=pretrain", f"output_model_path={run_dir / 'model'}"])
        facts = outcome(cfg, min(heldout_losses), run_dir)  # run returns the lowest held-out loss
        assert facts["dev"] == {"loss": min(heldout_losses), "mlm_loss": min(heldout_losses)}
        rows.append({"job": job, "overrides": ["stage=pretrain", f"pretrain.learning_rate={job + 1}e-4"],
                     "status": "ok", "error": None, "seconds": 1.0, "run_dir": str(run_dir), "stage": "pretrain",
                     "output": None,
                     **{key: facts[key] for key in ("metric", "score", "train", "dev", "test", "epoch", "checkpoint")}})
    _, md_path, best = write_tables(tmp_path / "sweep", rows, "minimize")
    assert best["job"] == 1
    assert "score = dev loss (lower is better)" in md_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def other_vocab_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("other_vocab")
    tokens = VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")
    tokens[200], tokens[201] = tokens[201], tokens[200]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return preprocess(directory, slice(300, 320), f"tokenizer.vocab_path={directory / 'vocab.txt'}")


@pytest.mark.parametrize("case", ["missing", "other target", "other vocabulary", "too long", "keep_best alone",
                                  "eval_steps alone"])
def test_bad_dev_settings_are_one_line_before_any_work(tmp_path, capsys, mlm_data, other_vocab_data, case):
    if case == "missing":
        extra, fragments = [f"pretrain.dev_dataset_path={tmp_path / 'nowhere'}"], ["pretrain.dev_dataset_path=",
                                                                                    "stage=preprocess"]
    elif case == "other target":
        lm = preprocess(tmp_path, slice(300, 320), "preprocess.full_sentences=true", target="lm")
        extra, fragments = [f"pretrain.dev_dataset_path={lm}"], [str(lm), "target 'lm'", "target=mlm"]
    elif case == "other vocabulary":
        extra, fragments = [f"pretrain.dev_dataset_path={other_vocab_data}"], [str(other_vocab_data), "vocab"]
    elif case == "too long":
        long = preprocess(tmp_path, slice(300, 320), seq_length=64)
        extra, fragments = [f"pretrain.dev_dataset_path={long}", "model.max_seq_length=32"], [str(long), "64", "32"]
    else:
        key = case.split()[0]
        extra, fragments = [f"pretrain.{key}={'true' if key == 'keep_best' else 2}"], [f"pretrain.{key}",
                                                                                      "pretrain.dev_dataset_path="]
    expect_user_error(capsys, train_cfg(mlm_data, tmp_path / "m", *extra), *fragments)
    assert not (tmp_path / "m").exists()
