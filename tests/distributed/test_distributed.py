"""Multi-process pre-training on CPU with gloo: equivalence, two nodes on one machine, restarts, failures."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.io.checkpoint import load_checkpoint, step_checkpoints
from uer import launch
from uer.app import run_stage
from uer_testing import ROOT, SMALL, book_review_slices, compose_config, error_lines, expect_user_error, run_main

pytestmark = pytest.mark.e2e

STEPS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def assert_same_weights(a, b):
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)


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
    assert_same_weights(two, one)


def test_two_processes_equal_gradient_accumulation_for_any_target_counts(tmp_path, mlm_data):
    two = train(mlm_data, tmp_path / "two", "pretrain.batch_size=4", "hardware.nproc_per_node=2")
    accumulated = train(mlm_data, tmp_path / "acc", "pretrain.batch_size=4", "pretrain.accumulation_steps=2")
    assert_same_weights(two, accumulated)
    assert two["trainer"]["step"] == STEPS


def main_cmd(run_dir, *args):
    return [sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args]


def env():
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def test_two_nodes_on_one_machine_rendezvous_and_write_one_checkpoint(tmp_path, mlm_data):
    endpoint = f"127.0.0.1:{free_port()}"
    args = ["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}", "pretrain.total_steps=4",
            "pretrain.batch_size=4", "hardware=multinode", "hardware.nnodes=2", "hardware.nproc_per_node=1",
            f"hardware.rdzv_endpoint={endpoint}", "hardware.rdzv_timeout=120", "hardware.num_threads=1",
            f"output_model_path={tmp_path / 'model'}"]
    nodes = [subprocess.Popen(main_cmd(tmp_path / f"node{i}", *args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err
    assert [s for s, _ in step_checkpoints(tmp_path / "model")] == [4]


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_killed_worker_is_restarted_and_the_run_finishes_from_the_last_checkpoint(tmp_path, mlm_data):
    model = tmp_path / "model"
    proc = subprocess.Popen(
        main_cmd(tmp_path / "run", "stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                 "pretrain.total_steps=100", "pretrain.save_checkpoint_steps=5", "pretrain.keep_checkpoints=2",
                 "pretrain.batch_size=4", "hardware.nproc_per_node=2", "hardware.max_restarts=1",
                 "hardware.num_threads=1", f"output_model_path={model}"),
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not step_checkpoints(model) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert step_checkpoints(model), "no checkpoint appeared"
    workers = [pid for pid in children(proc.pid)]  # the elastic agent runs in the main process
    victims = [pid for pid in workers if b"spawn" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert victims, workers
    os.kill(victims[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "resuming from" in err
    assert step_checkpoints(model)[-1][0] == 100


def test_unreachable_rendezvous_fails_clearly_within_the_timeout(tmp_path, mlm_data):
    start = time.monotonic()
    proc = run_main(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                     "hardware=multinode", "hardware.nproc_per_node=1", f"hardware.rdzv_endpoint=127.0.0.1:{free_port()}",
                     "hardware.rdzv_timeout=5", f"output_model_path={tmp_path / 'm'}"], tmp_path / "run", timeout=120)
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert lines and "rendezvous" in lines[-1] and "5s" in lines[-1]
    assert time.monotonic() - start < 90


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
    assert_same_weights(two, one)


def test_slurm_preset_selects_submitit_with_one_task_per_gpu():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hardware=slurm", "hydra.launcher.nodes=3"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 8, 8)


def test_slurm_tasks_become_ranks(monkeypatch):
    pytest.importorskip("submitit")
    from uer import distributed

    # submitit writes RANK, MASTER_ADDR, ... straight into os.environ: give it a copy that is
    # thrown away after the test, or later in-process runs would wait for that "cluster".
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    slurm = {"SLURM_JOB_ID": "12", "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NODELIST": "node[1-2]", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "2(x2)", "SUBMITIT_EXECUTOR": "slurm"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    distributed.adopt_slurm_tasks()
    assert distributed.env_from_os() == distributed.DistEnv(rank=3, local_rank=1, world_size=4)
    assert os.environ["MASTER_ADDR"] == "node1"


def test_resumed_two_process_run_equals_the_uninterrupted_one(tmp_path, mlm_data):
    """Each rank's RNG state is saved and restored, so both ranks' dropout continues as if never stopped."""
    common = ["stage=pretrain", "size=tiny", *SMALL, "model.dropout=0.1", f"pretrain.dataset_path={mlm_data}",
              f"pretrain.total_steps={STEPS}", "pretrain.report_steps=1", "pretrain.batch_size=4",
              "hardware.nproc_per_node=2", "hardware.num_threads=1"]
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'whole'}"]))
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'split'}", "pretrain.stop_after_steps=2"]))
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'split'}", "resume=true"]))
    assert_same_weights(load_checkpoint(tmp_path / "whole" / f"step_{STEPS}.pt"),
                        load_checkpoint(tmp_path / "split" / f"step_{STEPS}.pt"))


def test_two_process_fine_tune_stopped_early_resumes_to_the_uninterrupted_run(tmp_path):
    """last.pt holds every rank's random state and the data position: two ranks with dropout, stopped by early
    stopping and resumed without it, end with exactly the weights of a run never stopped."""
    data = ROOT / "datasets/test_data/book_review"
    common = ["stage=finetune", "task=classifier", "size=tiny", *SMALL, "model.dropout=0.1",
              f"finetune.train_path={data}/train.tsv", f"finetune.dev_path={data}/dev.tsv", "finetune.epochs_num=1",
              "finetune.batch_size=16", "finetune.eval_every_steps=1", "finetune.learning_rate=1e-3",
              "hardware.nproc_per_node=2", "hardware.num_threads=1"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_stage(compose_config([*common, f"output_model_path={whole}"]))
    run_stage(compose_config([*common, f"output_model_path={split}", "finetune.early_stopping_patience=1"]))
    stopped_at = load_checkpoint(split / "last.pt")["trainer"]["step"]
    assert stopped_at < 6, stopped_at  # 200 rows in global batches of 32: 6 steps
    run_stage(compose_config([*common, f"output_model_path={split}", "resume=true",
                              "resume_allow_changes=[finetune.early_stopping_patience]"]))
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(whole / name), load_checkpoint(split / name)
        assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"]), name
    assert load_checkpoint(split / "last.pt")["trainer"]["step"] == 6
