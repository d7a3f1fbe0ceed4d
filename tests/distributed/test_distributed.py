"""Multi-process training on CPU with gloo: two processes equal one with twice the batch or gradient accumulation;
what a multi-process run refuses is one line before any worker starts.  Stopped and resumed multi-process runs:
test_distributed_resume.py; the launcher from the command line (nodes, restarts, rendezvous): test_launcher.py."""

import numpy as np
import pytest

from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.io.checkpoint import load_checkpoint
from uer import launch
from uer.app import run_stage
from uer_testing import ROOT, SMALL, assert_close_weights, book_review_slices, compose_config, expect_user_error

pytestmark = pytest.mark.e2e

STEPS = 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    lines = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:300]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def dataset(tmp_path_factory, corpus, name, *options):
    path = tmp_path_factory.mktemp(name) / "data"
    run_stage(compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={path}",
                              "preprocess.seq_length=32", *options]))
    return path


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory, corpus):
    return dataset(tmp_path_factory, corpus, "lm", "target=lm", "preprocess.full_sentences=true")


def train(data, out, *extra):
    # Length bucketing off: with it, the accumulating run would sort and cut batches of 4 rows while
    # two processes cut batches of 8 and split them, so the two would train on other rows per step.
    run_stage(compose_config(["stage=pretrain", "size=tiny", *SMALL, "model.dropout=0.0", f"pretrain.dataset_path={data}",
                              f"pretrain.total_steps={STEPS}", "pretrain.report_steps=1", "pretrain.length_bucketing=false",
                              "hardware.num_threads=1", f"output_model_path={out}", *extra]))
    return load_checkpoint(out / f"step_{STEPS}.pt")


def test_two_processes_equal_one_with_twice_the_batch(tmp_path, lm_data):
    # Each rank averages its loss over its own targets and DDP averages the ranks, so this is
    # exact when every rank has as many targets: full-length LM rows.
    lengths = PretrainDataset(lm_data).lengths()
    sampler = EpochSampler(len(lengths), 8, 7)
    used = np.concatenate([sampler.next_indices()[0] for _ in range(STEPS)])
    assert len(set(lengths[used].tolist())) == 1, "precondition: equal-length rows"
    two = train(lm_data, tmp_path / "two", "target=lm", "encoder=gpt", "pretrain.batch_size=4",
                "hardware.nproc_per_node=2")
    one = train(lm_data, tmp_path / "one", "target=lm", "encoder=gpt", "pretrain.batch_size=8")
    assert_close_weights(two, one)


def test_two_processes_equal_gradient_accumulation_for_any_target_counts(tmp_path, mlm_data):
    two = train(mlm_data, tmp_path / "two", "pretrain.batch_size=4", "hardware.nproc_per_node=2")
    accumulated = train(mlm_data, tmp_path / "acc", "pretrain.batch_size=4", "pretrain.accumulation_steps=2")
    assert_close_weights(two, accumulated)
    assert two["trainer"]["step"] == STEPS


def test_two_compiled_processes_equal_eager_gradient_accumulation(tmp_path, mlm_data):
    """hardware.compile=true under DDP (gloo): aot_eager traces forward and backward as inductor does, in seconds."""
    two = train(mlm_data, tmp_path / "two", "pretrain.batch_size=4", "hardware.nproc_per_node=2",
                "hardware.compile=true", "hardware.compile_backend=aot_eager")
    accumulated = train(mlm_data, tmp_path / "acc", "pretrain.batch_size=4", "pretrain.accumulation_steps=2")
    assert_close_weights(two, accumulated)


@pytest.mark.parametrize("case", ["finetune dev_path", "pretrain dataset_path", "pretrain target", "finetune vocab",
                                  "pretrain vocab", "finetune metric"])
def test_a_data_file_the_run_refuses_is_one_line_before_any_worker_starts(tmp_path, monkeypatch, capsys, mlm_data,
                                                                          case):
    """Found inside the workers, every rank would find it (after starting them for nothing)."""
    monkeypatch.setattr(launch, "launch", lambda cfg, entry: pytest.fail("workers were started"))
    data = ROOT / "datasets/test_data/book_review"
    missing = tmp_path / "missing"
    settings, fragments = {
        "finetune dev_path": (["task=classifier", f"finetune.train_path={data}/train.tsv",
                               f"finetune.dev_path={missing}"],
                              [f"finetune.dev_path={missing}: no such file or directory", "nothing was started"]),
        "pretrain dataset_path": (["stage=pretrain", f"pretrain.dataset_path={missing}"],
                                  [f"pretrain.dataset_path={missing}: no such file or directory"]),
        "pretrain target": (["stage=pretrain", "target=bert", f"pretrain.dataset_path={mlm_data}"],
                            [f"{mlm_data} was built for target 'mlm'"]),
        "finetune vocab": (["task=classifier", f"finetune.train_path={data}/train.tsv",
                            f"finetune.dev_path={data}/dev.tsv", f"tokenizer.vocab_path={missing}"],
                           [f"vocab file {missing} not found"]),
        "pretrain vocab": (["stage=pretrain", f"pretrain.dataset_path={mlm_data}", f"tokenizer.vocab_path={missing}"],
                           [f"vocab file {missing} not found"]),
        "finetune metric": (["task=classifier", f"finetune.train_path={data}/train.tsv",
                             f"finetune.dev_path={data}/dev.tsv", "finetune.metric=bogus"],
                            ["finetune.metric=bogus is not reported by task classifier"]),
    }[case]
    cfg = compose_config([*settings, "size=tiny", *SMALL, "hardware.nproc_per_node=2", "hardware.num_threads=1",
                          f"output_model_path={tmp_path / 'm'}"])
    expect_user_error(capsys, cfg, *fragments)
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def one_process_checkpoint(tmp_path_factory, mlm_data):
    """A pre-training stopped at step 2 of 4 in one process: its step_2.pt."""
    out = tmp_path_factory.mktemp("one_process") / "model"
    run_stage(compose_config(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                              "pretrain.total_steps=4", "pretrain.save_checkpoint_steps=2",
                              "pretrain.stop_after_steps=2", "pretrain.batch_size=4", "hardware.num_threads=1",
                              f"output_model_path={out}"]))
    return out


@pytest.mark.parametrize("case", ["no checkpoint", "processes", "dataset"])
def test_a_resume_the_run_refuses_is_one_line_before_any_worker_starts(tmp_path, monkeypatch, capsys, mlm_data,
                                                                       lm_data, one_process_checkpoint, case):
    """resume=true under hardware.nproc_per_node=2: the checkpoint to continue is found and checked against the
    run's settings and data in the launching process, not by every worker after starting; nothing is changed."""
    monkeypatch.setattr(launch, "launch", lambda cfg, entry: pytest.fail("workers were started"))
    out, dataset = one_process_checkpoint, mlm_data
    if case == "no checkpoint":
        out = tmp_path / "empty"
        out.mkdir()
    elif case == "dataset":
        dataset = lm_data
    before = {path: path.read_bytes() for path in out.rglob('*') if path.is_file()}
    cfg = compose_config(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={dataset}",
                          "pretrain.total_steps=4", "pretrain.save_checkpoint_steps=2", "pretrain.batch_size=4",
                          "hardware.nproc_per_node=2", "hardware.num_threads=1", f"output_model_path={out}",
                          "resume=true"])
    fragment = {"no checkpoint": f"resume=true but {out} has no step_N.pt checkpoint",
                "processes": "cannot resume: world_size: checkpoint 1, now 2",
                "dataset": f"{lm_data} was built for target 'lm'"}[case]
    expect_user_error(capsys, cfg, fragment)
    assert {path: path.read_bytes() for path in out.rglob('*') if path.is_file()} == before


@pytest.fixture(scope="module")
def one_process_fine_tune(tmp_path_factory):
    """A fine-tuning of one epoch in one process on a slice of book_review: its directory and data files."""
    tmp = tmp_path_factory.mktemp("one_process_fine_tune")
    slices = book_review_slices(tmp, train=64, dev=16)
    out = tmp / "clf"
    run_stage(compose_config(["task=classifier", "size=tiny", *SMALL, f"finetune.train_path={slices['train']}",
                              f"finetune.dev_path={slices['dev']}", "finetune.epochs_num=1", "finetune.batch_size=16",
                              "finetune.seq_length=16", "hardware.num_threads=1", f"output_model_path={out}"]))
    return out, slices


@pytest.mark.parametrize("case", ["processes", "data"])
def test_a_fine_tuning_resume_the_run_refuses_is_one_line_before_any_worker_starts(
        tmp_path, monkeypatch, capsys, one_process_fine_tune, case):
    """last.pt's processes and data files are compared in the launching process; nothing is changed."""
    monkeypatch.setattr(launch, "launch", lambda cfg, entry: pytest.fail("workers were started"))
    out, slices = one_process_fine_tune
    train, allowed = slices["train"], []
    if case == "data":
        train = tmp_path / "train.tsv"
        train.write_text(slices["train"].read_text(encoding="utf-8") + "1\tone more row\n", encoding="utf-8")
        allowed = ["resume_allow_changes=[world_size]"]
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    cfg = compose_config(["task=classifier", "size=tiny", *SMALL, f"finetune.train_path={train}",
                          f"finetune.dev_path={slices['dev']}", "finetune.epochs_num=1", "finetune.batch_size=16",
                          "finetune.seq_length=16", "hardware.nproc_per_node=2", "hardware.num_threads=1",
                          f"output_model_path={out}", "resume=true", *allowed])
    fragment = {"processes": "cannot resume: world_size: checkpoint 1, now 2",
                "data": "cannot resume: dataset: checkpoint "}[case]
    expect_user_error(capsys, cfg, fragment)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def finetune(out, *extra):
    data = ROOT / "datasets/test_data/book_review"
    run_stage(compose_config(["stage=finetune", "task=classifier", "size=tiny", *SMALL, "model.dropout=0.0",
                              f"finetune.train_path={data}/train.tsv", f"finetune.dev_path={data}/dev.tsv",
                              "finetune.epochs_num=1", "finetune.learning_rate=1e-3", "hardware.num_threads=1",
                              f"output_model_path={out}", *extra]))
    return load_checkpoint(out / "best.pt")


def test_finetune_two_processes_equal_one_with_twice_the_batch(tmp_path):
    two = finetune(tmp_path / "two", "finetune.batch_size=16", "hardware.nproc_per_node=2")
    one = finetune(tmp_path / "one", "finetune.batch_size=32")
    assert_close_weights(two, one)


