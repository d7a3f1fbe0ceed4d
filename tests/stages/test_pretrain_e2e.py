"""End to end: the documented preprocess + pretrain command pairs, resume, and bad inputs."""

import json
import shutil

import pytest
import torch

from uer.io.checkpoint import load_checkpoint, step_checkpoints
from uer.app import run_stage
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines, expect_user_error, run_main

pytestmark = pytest.mark.e2e


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mlm_pair_as_documented_loss_falls(tmp_path):
    """The README's pair, as written but for output paths and a shorter run (25 steps instead of 200, reported every
    5, on one thread, to keep the suite within its time): the loss at the last report is clearly below the first."""
    data, model = tmp_path / "br_mlm", tmp_path / "br_tiny"
    pre = run_main(["stage=preprocess", "target=mlm", "preprocess.corpus_path=corpora/book_review.txt",
                    f"preprocess.dataset_path={data}", "preprocess.processes_num=2"], tmp_path / "run_pre")
    assert pre.returncode == 0, pre.stderr
    train = run_main(["stage=pretrain", "encoder=bert", "size=tiny", "target=mlm", f"pretrain.dataset_path={data}",
                      "pretrain.total_steps=25", "pretrain.batch_size=16", "pretrain.report_steps=5",
                      "hardware.num_threads=1", f"output_model_path={model}"], tmp_path / "run")
    assert train.returncode == 0, train.stderr
    reports = read_metrics(tmp_path / "run")
    assert [r["step"] for r in reports] == list(range(5, 26, 5))
    first, last = reports[0]["mlm_loss"], reports[-1]["mlm_loss"]
    assert last < first - 0.5, (first, last)
    assert (tmp_path / "run" / "tensorboard").is_dir()
    payload = load_checkpoint(model / "step_25.pt")
    assert payload["config"]["encoder"]["hidden_size"] == 384
    assert payload["vocab"]["vocab_size"] == 21128


PAIRS = {
    "bert": (["target=bert"], "corpora/book_review_bert.txt", ["target=bert"]),
    "albert": (["target=albert"], "corpora/book_review_bert.txt", ["target=albert", "size=albert_base"]),
    "gpt": (["target=lm"], "corpora/book_review.txt", ["encoder=gpt", "target=lm"]),
    "span": (["target=mlm", "preprocess.span_masking=true"], "corpora/book_review.txt", ["target=mlm"]),
    "dynamic": (["target=mlm", "preprocess.dynamic_masking=true"], "corpora/book_review.txt", ["target=mlm"]),
    "seq2seq": (["target=seq2seq"], "datasets/test_data/parallel/train.tsv",
                ["decoder=transformer", "target=seq2seq", "size=smoke"]),
    "t5": (["target=t5"], "corpora/book_review.txt", ["decoder=transformer", "target=t5", "size=smoke"]),
    "bart": (["target=bart"], "corpora/book_review_bert.txt", ["decoder=transformer", "target=bart", "size=smoke"]),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_other_pairs_train_and_checkpoint(tmp_path, name):
    pre_args, corpus, train_args = PAIRS[name]
    lines = (ROOT / corpus).read_text(encoding="utf-8").splitlines()[:600]
    small_corpus = tmp_path / "corpus.txt"
    small_corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data, model = tmp_path / "data", tmp_path / "model"
    # In-process (main.py's own path is the README pair's test above): two worker processes preprocess.
    run_stage(compose_config(["stage=preprocess", *pre_args, f"preprocess.corpus_path={small_corpus}",
                              f"preprocess.dataset_path={data}", "preprocess.seq_length=64",
                              "preprocess.processes_num=2"]))
    size = [a for a in train_args if a.startswith("size=")] or ["size=tiny"]
    run_stage(compose_config(["stage=pretrain", *[a for a in train_args if not a.startswith("size=")], *size, *SMALL,
                              "hardware.num_threads=1", f"pretrain.dataset_path={data}", "pretrain.total_steps=20",
                              "pretrain.batch_size=8", "pretrain.report_steps=10", f"output_model_path={model}"]))
    reports = read_metrics(model)
    loss_keys = {k for k in reports[-1] if k.endswith("_loss")}
    expected = {"bert": {"mlm_loss", "nsp_loss"}, "albert": {"mlm_loss", "sop_loss"}, "gpt": {"lm_loss"},
                "seq2seq": {"seq2seq_loss"}, "t5": {"t5_loss"}, "bart": {"bart_loss"}}
    assert loss_keys == expected.get(name, {"mlm_loss"})
    assert [s for s, _ in step_checkpoints(model)] == [20]


def _train_cfg(data, model, *extra):
    return compose_config(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={data}",
                           "pretrain.total_steps=200", "pretrain.batch_size=4", "pretrain.report_steps=50",
                           "pretrain.save_checkpoint_steps=50", f"output_model_path={model}", *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, mlm_data):
    """The uninterrupted run both resumed runs must end as (batches built in the loop)."""
    out = tmp_path_factory.mktemp("straight") / "model"
    run_stage(_train_cfg(mlm_data, out))
    return out


@pytest.mark.parametrize("workers", [0, 2], ids=["in-loop batches", "data_workers=2"])
def test_resume_after_stop_matches_uninterrupted_run(tmp_path, mlm_data, straight, workers):
    """The interrupted run may build its batches in worker processes: the same batches, the same weights."""
    split = tmp_path / "split"
    workers_arg = f"pretrain.data_workers={workers}"
    run_stage(_train_cfg(mlm_data, split, "pretrain.stop_after_steps=100", workers_arg))
    assert [s for s, _ in step_checkpoints(split)] == [50, 100]
    run_stage(_train_cfg(mlm_data, split, "resume=true", workers_arg))
    a = load_checkpoint(straight / "step_200.pt")
    b = load_checkpoint(split / "step_200.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    # And the run really trained: the weights moved from the step-50 state.
    early = load_checkpoint(straight / "step_50.pt")["model"]
    assert any(not torch.equal(early[k], a["model"][k]) for k in a["model"])


def vocab_lines() -> list[str]:
    # Not splitlines(): the vocabulary holds tokens such as U+2028 that it treats as line breaks.
    return VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")


def test_resume_refuses_changed_architecture(tmp_path, mlm_data, capsys):
    run_stage(_train_cfg(mlm_data, tmp_path / "m", "pretrain.stop_after_steps=50"))
    expect_user_error(capsys, _train_cfg(mlm_data, tmp_path / "m", "resume=true", "model.layers_num=3"),
                      "layers_num")


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path, mlm_data, capsys):
    run_stage(_train_cfg(mlm_data, tmp_path / "m", "pretrain.stop_after_steps=50"))
    before = (tmp_path / "m" / "step_50.pt").read_bytes()
    expect_user_error(capsys, _train_cfg(mlm_data, tmp_path / "m"), "resume=true", str(tmp_path / "m"))
    assert (tmp_path / "m" / "step_50.pt").read_bytes() == before


@pytest.fixture
def existing_dataset(tmp_path, mlm_data):
    target = tmp_path / "existing"
    shutil.copytree(mlm_data, target)
    return target, {p.name: p.read_bytes() for p in target.iterdir()}


def assert_untouched(existing):
    target, files = existing
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files


@pytest.mark.parametrize("content, fragment", [(b"", "empty"), (b"\n\n  \n", "blank"),
                                               ("好书\n".encode() + b"\xff\xfe bad\n", ":2")])
def test_bad_corpus_is_one_line_and_keeps_existing_dataset(tmp_path, capsys, existing_dataset, content, fragment):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(content)
    cfg = compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus}",
                          f"preprocess.dataset_path={existing_dataset[0]}", "preprocess.overwrite=true"])
    line = expect_user_error(capsys, cfg, str(corpus))
    assert fragment in line
    assert_untouched(existing_dataset)


def test_missing_vocab_via_main(tmp_path, existing_dataset):
    proc = run_main(["stage=preprocess", "preprocess.corpus_path=corpora/literature_mini.txt",
                     f"preprocess.dataset_path={existing_dataset[0]}", "preprocess.overwrite=true", "tokenizer.vocab_path=models/nope.txt"],
                    tmp_path / "run")
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and "models/nope.txt" in lines[0]
    assert "Traceback" not in proc.stderr
    assert_untouched(existing_dataset)


def test_vocab_without_mask_is_refused(tmp_path, capsys, existing_dataset):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(t for t in vocab_lines() if t != "[MASK]") + "\n",
                     encoding="utf-8")
    cfg = compose_config(["stage=preprocess", "preprocess.corpus_path=corpora/literature_mini.txt",
                          f"preprocess.dataset_path={existing_dataset[0]}", "preprocess.overwrite=true", f"tokenizer.vocab_path={vocab}"])
    expect_user_error(capsys, cfg, str(vocab), "[MASK]")
    assert_untouched(existing_dataset)


def test_pretrain_refuses_dataset_of_another_target(tmp_path, capsys, mlm_data):
    expect_user_error(capsys, _train_cfg(mlm_data, tmp_path / "m", "target=bert"), str(mlm_data))
    assert not (tmp_path / "m").exists()


def test_pretrain_refuses_dataset_of_another_vocabulary(tmp_path, capsys, mlm_data):
    vocab = tmp_path / "vocab.txt"
    tokens = vocab_lines()
    tokens[200], tokens[201] = tokens[201], tokens[200]
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    cfg = _train_cfg(mlm_data, tmp_path / "m", f"tokenizer.vocab_path={vocab}")
    expect_user_error(capsys, cfg, str(mlm_data))
    assert not (tmp_path / "m").exists()
