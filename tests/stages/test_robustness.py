"""Never silently wrong: each numbered case of the issue "fail before work, fail loud, lose nothing".

Every case stops with one ``error:`` line and a non-zero exit, leaves nothing half-written,
and never calls a broken model done or best.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uer.config.validate import check_run_config
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint, save_checkpoint, step_checkpoints
from uer.io.outputs import DIRECTORY, FILE, LOCK_FILE, Output, claimed
from uer.models import build_model
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer_testing import (ROOT, SMALL, VOCAB, compose_config, error_lines, expect_user_error, run_main,
                         save_model_checkpoint)

pytestmark = pytest.mark.e2e

DATA = ROOT / "datasets" / "test_data" / "book_review"
FINETUNE = ["task=classifier", "size=tiny", *SMALL, "hardware.num_threads=1", "finetune.seq_length=32",
            "finetune.batch_size=16", "finetune.epochs_num=1", f"finetune.train_path={DATA / 'train.tsv'}",
            f"finetune.dev_path={DATA / 'dev.tsv'}"]


def corpus_slice(tmp_path, name: str, lines: int):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join((ROOT / "corpora" / name).read_text(encoding="utf-8").splitlines()[:lines]) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust_data")
    path = tmp / "mlm"
    run_stage(compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus_slice(tmp, 'book_review.txt', 400)}",
                              f"preprocess.dataset_path={path}", "preprocess.seq_length=32"]))
    return path


def pretrain_args(dataset, out, *extra) -> list[str]:
    """The vocabulary by absolute path, as compose_config gives it: a run main.py began resumes in-process."""
    return ["stage=pretrain", "size=tiny", *SMALL, "hardware.num_threads=1", f"pretrain.dataset_path={dataset}",
            "pretrain.batch_size=4", "pretrain.total_steps=6", "pretrain.save_checkpoint_steps=2",
            "pretrain.report_steps=2", f"tokenizer.vocab_path={VOCAB}", f"output_model_path={out}", *extra]


def pretrain_cfg(dataset, out, *extra):
    return compose_config(pretrain_args(dataset, out, *extra))


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name)


def assert_one_line_no_traceback(proc, *fragments) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = error_lines(proc)
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "\x1b" not in proc.stderr
    return lines[0]


# --- 1. one writer per output location --------------------------------------------------------

def _wait_for(condition, what: str, proc=None, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the first run ended before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _start(args, run_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _running(args, run_dir):
    """``python main.py ARGS`` started; killed on the way out if the test left it running."""
    run = _start(args, run_dir)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _stop(run, signum) -> str:
    """Send ``signum`` to ``run``; its stderr, once it has ended with exit 128 + signum and no traceback."""
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    return stderr


def test_a_second_run_into_a_location_in_use_is_refused_naming_the_holder_and_a_killed_one_s_is_taken_over(
        dataset, tmp_path, caplog):
    out = tmp_path / "model"
    first = _start(pretrain_args(dataset, out, "pretrain.total_steps=100000"), tmp_path / "run_a")
    try:
        _wait_for(lambda: step_checkpoints(out), "its first checkpoint", first)
        second = run_main(pretrain_args(dataset, out), tmp_path / "run_b")
        line = assert_one_line_no_traceback(second, f"output_model_path={out} is in use by another run",
                                            f"pid {first.pid} on host ", "started ")
        assert "wait for it to end, or choose another output_model_path" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # Every checkpoint is the first run's, and the second wrote nothing into its own run directory either.
    assert all(load_checkpoint(path)["config"]["pretrain"]["total_steps"] == 100000
               for _, path in step_checkpoints(out))
    assert not (tmp_path / "run_b" / "config.yaml").exists()
    # The killed run left its lock file (and, say, half a save): the next run takes over, cleans up, continues.
    assert (out / LOCK_FILE).is_file()
    (out / ".step_99.pt.a1b2c3d4.tmp").write_bytes(b"half a checkpoint")
    newest = step_checkpoints(out)[-1][0]
    with caplog.at_level("INFO"):  # in-process: the take-over is the lock's business, not the command line's
        run_stage(pretrain_cfg(dataset, out, "pretrain.total_steps=100000", "resume=true",
                               "pretrain.stop_after_steps=1"))
    assert f"taking over the lock left by pid {first.pid}" in caplog.text
    assert "removed" in caplog.text and ".step_99.pt.a1b2c3d4.tmp" in caplog.text
    assert leftovers(out) == [] and not (out / LOCK_FILE).exists()
    assert step_checkpoints(out)[-1][0] == newest + 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_pre_training_says_what_it_kept_in_one_line_and_resumes(dataset, tmp_path, signum):
    out = tmp_path / "model"
    with _running(pretrain_args(dataset, out, "pretrain.total_steps=100000"), tmp_path / "run_a") as run:
        _wait_for(lambda: step_checkpoints(out), "its first checkpoint", run)
        stderr = _stop(run, signum)
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted by {signal.Signals(signum).name}: the checkpoints saved so far are kept in {out}; the same "
        "command with resume=true continues from the newest"]
    assert leftovers(out) == [] and not (out / LOCK_FILE).exists()  # nothing half-written, the lock released
    newest, path = step_checkpoints(out)[-1]
    assert load_checkpoint(path)["trainer"]["step"] == newest
    # The resumed run in-process (the signal and its line were main.py's).
    run_stage(pretrain_cfg(dataset, out, "pretrain.total_steps=100000", "resume=true", "pretrain.stop_after_steps=1"))
    assert step_checkpoints(out)[-1][0] == newest + 1


# A Ctrl-C landing while the garbage collector runs a __del__ (here at step 3, after the checkpoint of step 2):
# Python swallows the exception raised there ("Exception ignored in ...") and goes on.
SWALLOWED_STOP = """
import signal
from uer.training.trainer import Trainer

train_step = Trainer.train_step


class Collected:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # the handler runs here, inside __del__


def train_step_collecting(self, micro_batches):
    result = train_step(self, micro_batches)
    if self.step == 3:
        Collected()
    return result


Trainer.train_step = train_step_collecting
"""


def test_a_stop_python_swallows_in_a_del_still_stops_the_run_in_one_line(dataset, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SWALLOWED_STOP, encoding="utf-8")
    out = tmp_path / "model"
    env = dict(os.environ, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    proc = subprocess.run([sys.executable, "main.py", f"hydra.run.dir={tmp_path / 'run'}",
                           *pretrain_args(dataset, out, "pretrain.total_steps=8")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr[-3000:]  # not 0: the run did not go on to step 8
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"interrupted by SIGINT: the checkpoints saved so far are kept in {out}; the same command with resume=true "
        "continues from the newest"]
    assert [step for step, _ in step_checkpoints(out)] == [2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc/PID/maps")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_main_py_is_still_loading_is_one_line(tmp_path, signum):
    """The signal arrives while torch is being imported (its library just mapped into the process): before any
    handler of uer's, Python's own would print a KeyboardInterrupt traceback (SIGINT) or end without a word (SIGTERM)."""
    with _running(["stage=preprocess", f"preprocess.corpus_path={corpus_slice(tmp_path, 'book_review.txt', 20)}",
                   f"preprocess.dataset_path={tmp_path / 'data'}"], tmp_path / "run") as run:
        _wait_for(lambda: "libtorch" in Path(f"/proc/{run.pid}/maps").read_text(), "torch to load", run)
        stderr = _stop(run, signum)
    name = signal.Signals(signum).name
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"interrupted by {name} before the run started: nothing was written; run the command again"], stderr
    assert not (tmp_path / "data").exists()


def test_a_second_fine_tuning_into_one_path_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "clf"
    with _running([*FINETUNE, "finetune.epochs_num=1000", f"output_model_path={out}"], tmp_path / "run_a") as first:
        _wait_for(lambda: (out / LOCK_FILE).is_file() and (out / LOCK_FILE).read_text(), "its lock", first)
        second = run_main([*FINETUNE, f"output_model_path={out}"], tmp_path / "run_b")
        assert_one_line_no_traceback(second, f"output_model_path={out} is in use by another run", f"pid {first.pid}")
        stderr = _stop(first, signal.SIGINT)  # a fine-tuning stopped anywhere: one line, as pre-training is
    [line] = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert line.startswith("interrupted by SIGINT: "), line
    assert not (out / LOCK_FILE).exists()
    if (out / "best.pt").exists():  # the first run finished an epoch before it was stopped: its model
        assert load_checkpoint(out / "best.pt")["config"]["finetune"]["epochs_num"] == 1000


def test_fine_tuning_refuses_an_earlier_run_s_model_as_pre_training_does(tmp_path, capsys):
    out = tmp_path / "clf"
    run_stage(compose_config([*FINETUNE, f"output_model_path={out}"]))
    before = (out / "best.pt").read_bytes()
    line = expect_user_error(capsys, compose_config([*FINETUNE, f"output_model_path={out}", "finetune.epochs_num=2"]),
                             f"output_model_path {out} already holds best.pt from an earlier run")
    assert "pass resume=true to continue it, or choose another output_model_path" in line
    assert (out / "best.pt").read_bytes() == before


def test_a_lock_is_released_and_its_directories_removed_when_the_run_leaves_them_empty(tmp_path):
    outputs = [Output("output_model_path", tmp_path / "a" / "b", DIRECTORY),
               Output("infer.prediction_path", tmp_path / "c" / "p.tsv", FILE)]
    with claimed(outputs):
        assert (tmp_path / "a" / "b" / LOCK_FILE).is_file() and (tmp_path / "c" / ".p.tsv.lock").is_file()
        with pytest.raises(UerError, match="is in use by another run"):
            claimed(outputs[1:])  # another writer of the same file
    assert list(tmp_path.iterdir()) == []


# --- 2. settings that cannot work stop the run before any work --------------------------------

@pytest.mark.parametrize("overrides, line", [
    (["pretrain.learning_rate=inf"], "pretrain.learning_rate=inf must be a positive finite number"),
    (["pretrain.learning_rate=nan"], "pretrain.learning_rate=nan must be a positive finite number"),
    (["pretrain.learning_rate=-1"], "pretrain.learning_rate=-1.0 must be a positive finite number"),
    (["stage=finetune", "finetune.learning_rate=inf"], "finetune.learning_rate=inf must be a positive finite number"),
    (["lr_scheduler.warmup=1.5"], "lr_scheduler.warmup=1.5 must be in [0, 1)"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be in [0, 1)"),
    (["pretrain.batch_size=0"], "pretrain.batch_size=0 must be at least 1"),
    (["model.heads_num=-2"], "model.heads_num=-2 must be at least 1"),
    (["optimizer.beta2=1"], "optimizer.beta2=1.0 must be in [0, 1)"),
    (["optimizer.eps=0"], "optimizer.eps=0.0 must be a positive finite number"),
    (["pretrain.max_grad_norm=inf"], "pretrain.max_grad_norm=inf must be a finite number >= 0"),
    (["stage=infer", "infer.batch_size=0"], "infer.batch_size=0 must be at least 1"),
])
def test_a_setting_out_of_its_bounds_is_one_line_naming_the_key(overrides, line):
    with pytest.raises(UerError) as err:
        check_run_config(compose_config(overrides), {})
    assert str(err.value) == line


def test_an_infinite_learning_rate_via_main_stops_in_preflight_and_writes_nothing(tmp_path):
    proc = run_main(["pretrain.learning_rate=inf", f"output_model_path={tmp_path / 'm'}"], tmp_path / "run")
    assert_one_line_no_traceback(proc, "pretrain.learning_rate=inf must be a positive finite number")
    assert not (tmp_path / "m").exists() and not (tmp_path / "run").exists()


def test_a_diverging_pre_training_stops_naming_the_step_and_writes_no_checkpoint(dataset, tmp_path):
    out = tmp_path / "m"
    proc = run_main(pretrain_args(dataset, out, "pretrain.learning_rate=1e30", "lr_scheduler.warmup=0"),
                    tmp_path / "run")
    line = assert_one_line_no_traceback(proc, "training stopped: the loss", "became nan or inf at step ",
                                        "a learning rate too high")
    assert "fp16" not in line  # the run is fp32
    assert step_checkpoints(out) == [] and not (out / "best.pt").exists()
    assert "pretrain done" not in (tmp_path / "run" / "main.log").read_text()


def test_a_diverging_fine_tuning_never_scores_or_saves_a_best_model(tmp_path, capsys):
    out = tmp_path / "clf"
    line = expect_user_error(capsys, compose_config([*FINETUNE, "finetune.learning_rate=1e30", "lr_scheduler.warmup=0",
                                                     f"output_model_path={out}"]),
                             "training stopped", "became nan or inf at step")
    assert "best" not in capsys.readouterr().out
    assert not (out / "best.pt").exists(), line


def test_on_an_accelerator_the_first_bad_step_is_named_at_the_next_report(monkeypatch):
    """Where reading the flag each step would cost a sync, it is read at reports: the step is still the first."""
    from uer.training.report import Reporter
    from uer.training.trainer import Trainer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, batch):
            from types import SimpleNamespace

            value = batch["x"] * self.w
            return SimpleNamespace(loss=value.sum(), stats={})

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 10.0 ** -step)  # a rate per step
    trainer = Trainer(model, optimizer, scheduler, device=torch.device("cpu"), precision="fp32", accumulation_steps=1,
                      max_grad_norm=0.0, reporter=Reporter(None, 10, enabled=False))
    trainer._check_each_step = False  # as on CUDA
    values = iter([1.0, 2.0, float("nan"), 3.0, 4.0, 5.0])
    with pytest.raises(UerError, match="the loss became nan or inf at step 3") as err:
        trainer.fit(lambda: {"x": torch.tensor([next(values)]), "src": torch.ones(1, 1, dtype=torch.long)}, 6, 5)
    assert trainer.step == 5  # it ran on to the report, then stopped
    # the learning rate step 3 trained with (1e-3 * 10^-2), not the one at the report
    assert "a learning rate too high (1e-05 at that step)" in str(err.value)


def test_a_checkpoint_of_non_finite_weights_is_never_written(tmp_path):
    cfg = compose_config(["size=tiny", *SMALL])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(build_tokenizer(cfg.tokenizer).vocab))
    state = model.state_dict()
    state["target.mlm_linear_2.bias"][3] = float("inf")
    with pytest.raises(UerError, match="target.mlm_linear_2.bias holds nan or inf"):
        save_checkpoint(tmp_path / "x.pt", model_state=state, config={"tokenizer": dict(cfg.tokenizer)},
                        tokenizer=build_tokenizer(cfg.tokenizer), trainer=None)
    assert list(tmp_path.iterdir()) == []


# --- 3. outputs are checked before any input is read ------------------------------------------

def test_an_output_model_path_that_is_a_file_stops_before_the_dataset_is_read(tmp_path, capsys):
    out = tmp_path / "m"
    out.write_text("not a directory")
    expect_user_error(capsys, pretrain_cfg(tmp_path / "no_dataset_here", out),
                      f"output_model_path={out} is a file, not a directory")
    assert out.read_text() == "not a directory"


def test_a_prediction_path_that_is_a_directory_stops_before_the_model_is_read(tmp_path, capsys):
    expect_user_error(capsys, compose_config(["stage=infer", f"infer.load_model_path={tmp_path / 'none.pt'}",
                                              f"infer.test_path={DATA / 'test_nolabel.tsv'}",
                                              f"infer.prediction_path={tmp_path}"]),
                      f"infer.prediction_path={tmp_path} is a directory; give a file name")


def _read_only_directory(tmp_path):
    """A directory this process cannot write into: by its mode, or (as root, whom modes do not stop) a read-only
    mount; None where neither can be made."""
    directory = tmp_path / "ro"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return directory
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(directory)],
                      capture_output=True).returncode != 0:
        return None
    return directory


def test_an_output_directory_that_cannot_be_written_stops_in_the_first_second(tmp_path, capsys):
    directory = _read_only_directory(tmp_path)
    if directory is None:
        pytest.skip("no read-only location can be made here (root, and mounting is not permitted)")
    try:
        line = expect_user_error(capsys, pretrain_cfg(tmp_path / "no_dataset_here", directory / "m"),
                                 f"output_model_path={directory / 'm'} cannot be written")
        assert re.search(r"(Permission denied|Read-only file system); choose a", line), line
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(directory)], check=False)
        else:
            directory.chmod(0o755)


# --- 4. a failed write is one line, and nothing is half-written ----------------------------------

def test_a_full_disk_at_a_save_is_one_line_and_keeps_the_earlier_checkpoints(dataset, tmp_path, capsys, monkeypatch):
    import uer.io.atomic as atomic

    out = tmp_path / "m"
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    line = expect_user_error(capsys, pretrain_cfg(dataset, out), f"cannot write {out / 'step_4.pt'}: "
                             "No space left on device; free space there or write elsewhere")
    assert "inline_container" not in line and "Traceback" not in capsys.readouterr().err
    assert [step for step, _ in step_checkpoints(out)] == [2]
    assert load_checkpoint(out / "step_2.pt")["trainer"]["step"] == 2
    assert leftovers(out) == []


@pytest.mark.parametrize("full", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                  OSError("77404 requested and 30656 written")],  # numpy's own short-write error
                         ids=["errno", "short-write"])
def test_a_full_disk_while_preprocessing_is_one_line_and_keeps_the_dataset(dataset, tmp_path, capsys, monkeypatch,
                                                                           full):
    import shutil
    import uer.data.build as build

    kept = tmp_path / "kept"
    shutil.copytree(dataset, kept)
    before = {path.name: path.read_bytes() for path in kept.iterdir()}

    def save_arrays(directory, arrays):
        raise full

    monkeypatch.setattr(build, "save_arrays", save_arrays)
    cfg = compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus_slice(tmp_path, 'book_review.txt', 50)}",
                          f"preprocess.dataset_path={kept}", "preprocess.seq_length=32", "preprocess.overwrite=true"])
    expect_user_error(capsys, cfg, f"cannot write {kept}: No space left on device",
                      "free space there or write elsewhere (files written before are unchanged)")
    assert {path.name: path.read_bytes() for path in kept.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_a_real_full_file_system_is_one_line(dataset, tmp_path, capsys):
    """torch's zip writer wraps the OS error in its own; the line still says what the OS said."""
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small file system is not permitted here")
    try:
        expect_user_error(capsys, pretrain_cfg(dataset, small / "m"), f"cannot write {small / 'm' / 'step_2.pt'}",
                          "No space left on device")
        assert leftovers(small / "m") == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


# --- 5. a dataset holding impossible values is refused when opened -----------------------------

def test_token_ids_beyond_the_vocabulary_are_refused_at_open_naming_the_array(dataset, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    tokens = np.load(broken / "tokens.npy")
    tokens[-1] = 30000  # the vocabulary has 21128 ids; the rows that hold it are rarely drawn
    np.save(broken / "tokens.npy", tokens)
    line = expect_user_error(capsys, pretrain_cfg(broken, tmp_path / "m"),
                             f"{broken}: tokens.npy holds 30000 at index {len(tokens) - 1}", "ids below 21128")
    assert "re-run preprocess" in line
    assert not (tmp_path / "m").exists()


# --- 6. vocabulary identity wherever a model is started from -------------------------------------

def test_pre_training_from_a_checkpoint_of_another_vocabulary_of_the_same_size_is_refused(dataset, tmp_path, capsys):
    tokens = VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")
    tokens[200], tokens[201] = tokens[201], tokens[200]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    cfg = compose_config(["size=tiny", *SMALL, f"tokenizer.vocab_path={vocab}"])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokens))
    start = save_model_checkpoint(tmp_path / "other_vocab.pt", model, cfg)
    line = expect_user_error(capsys, pretrain_cfg(dataset, tmp_path / "m", f"pretrained_model_path={start}"),
                             f"{dataset} was built for target 'mlm' with tokenizer (vocab_sha256=")
    hashes = re.findall(r"vocab_sha256=([0-9a-f]+)", line)
    assert len(hashes) == 2 and hashes[0] != hashes[1]


def test_pre_training_from_an_original_bin_of_another_vocabulary_size_names_the_vocabulary(dataset, tmp_path, capsys):
    from uer.io.uer_format import save_uer_bin

    cfg = compose_config(["size=tiny", *SMALL])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, 1000)
    save_uer_bin(model, tmp_path / "small_vocab.bin")
    start = tmp_path / "small_vocab.bin"
    expect_user_error(capsys, pretrain_cfg(dataset, tmp_path / "m", f"pretrained_model_path={start}"),
                      "its word embedding has 1000 rows, but this run's vocabulary has 21128 tokens",
                      "tokenizer.vocab_path=")


# --- 7. degenerate pre-training data ---------------------------------------------------------

def test_a_bert_corpus_of_one_document_is_refused_with_the_fix(tmp_path, capsys):
    corpus = corpus_slice(tmp_path, "book_review.txt", 50)  # one review a line, no blank line: one document
    cfg = compose_config(["stage=preprocess", "target=bert", f"preprocess.corpus_path={corpus}",
                          f"preprocess.dataset_path={tmp_path / 'd'}"])
    line = expect_user_error(capsys, cfg,
                             f"corpus {corpus} holds a single document", "separate its documents with blank lines")
    assert "target=mlm" in line
    assert not (tmp_path / "d").exists() and leftovers(tmp_path) == []


# --- 8. what a killed run left behind is removed by the next run --------------------------------

def test_a_killed_preprocess_s_temporary_dataset_is_removed_by_the_next_one(tmp_path, caplog):
    target = tmp_path / "d"
    dead = tmp_path / ".d.tmp-0123456789ab"
    (dead / "shards").mkdir(parents=True)
    (dead / "tokens.npy").write_bytes(b"\0" * 1024)
    other = tmp_path / ".other.tmp-0123456789ab"  # another dataset's: not this run's to remove
    other.mkdir()
    with caplog.at_level("WARNING", logger="uer"):
        run_stage(compose_config(["stage=preprocess", "preprocess.seq_length=32", f"preprocess.dataset_path={target}",
                                  f"preprocess.corpus_path={corpus_slice(tmp_path, 'book_review.txt', 50)}"]))
    assert not dead.exists() and other.exists() and (target / "meta.json").is_file()
    assert f"removed {dead}, left there by a run that was killed" in caplog.text


# --- 9. resume takes the newest checkpoint that can be read -----------------------------------

def test_resume_skips_an_unreadable_newest_checkpoint_naming_it(dataset, tmp_path, caplog):
    out = tmp_path / "m"
    run_stage(pretrain_cfg(dataset, out, "pretrain.stop_after_steps=4"))
    (out / "step_4.pt").write_bytes((out / "step_4.pt").read_bytes()[:1000])  # killed mid-copy, say
    with caplog.at_level("WARNING", logger="uer.pretrain"):
        run_stage(pretrain_cfg(dataset, out, "resume=true"))
    assert f"resuming from {out / 'step_2.pt'}, the newest readable checkpoint; skipped step_4.pt" in caplog.text
    assert load_checkpoint(out / "step_6.pt")["trainer"]["step"] == 6
    assert load_checkpoint(out / "step_4.pt")["trainer"]["step"] == 4  # rewritten by the resumed run


# --- 10. a sweep value outside its bounds stops the sweep before its first job -----------------

def test_a_sweep_value_out_of_bounds_stops_the_sweep_before_any_job(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "main.py", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *FINETUNE,
                           "finetune.learning_rate=1e-4,inf,3e-4"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    line = assert_one_line_no_traceback(proc, "job 1 of the sweep (finetune.learning_rate=inf): "
                                              "finetune.learning_rate=inf must be a positive finite number")
    assert line and not (tmp_path / "sweep").exists()


# --- 11. error lines a person can read --------------------------------------------------------

def test_an_unsafe_model_file_is_one_short_line_without_escape_codes(tmp_path):
    class Unsafe:
        def __reduce__(self):
            return (os.getpid, ())

    evil = tmp_path / "evil.pt"
    torch.save({"model": Unsafe()}, evil)
    proc = run_main(["stage=infer", f"infer.load_model_path={evil}", f"infer.test_path={DATA / 'test_nolabel.tsv'}",
                     f"infer.prediction_path={tmp_path / 'p.tsv'}"], tmp_path / "run")
    line = assert_one_line_no_traceback(proc, f"checkpoint {evil} cannot be read: it holds Python objects "
                                              "(posix.getpid)")
    assert len(line) < 250, line
    assert not (tmp_path / "p.tsv").exists()


def test_the_error_printer_strips_escape_codes_and_joins_lines(capsys):
    from uer.app import _fail

    with pytest.raises(SystemExit):
        _fail("a \x1b[1mbold\x1b[0m claim\nand a second line")
    assert capsys.readouterr().err == "error: a bold claim; and a second line\n"


def test_the_lock_file_names_its_holder(tmp_path):
    with claimed([Output("output_model_path", tmp_path, DIRECTORY)]):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] and record["started"]


def test_an_interrupted_inference_is_one_line_and_writes_no_predictions(tmp_path):
    """SIGINT while the model reads and scores a long file: exit 130, one line, no partial prediction file."""
    model = tmp_path / "clf"
    run_stage(compose_config([*FINETUNE, f"output_model_path={model}"]))
    texts = [row.split("\t", 1)[1] for row in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    test = tmp_path / "long.tsv"
    test.write_text("text_a\n" + "\n".join(texts * 4000) + "\n", encoding="utf-8")  # 200,000 rows: seconds of work
    predictions = tmp_path / "predictions.tsv"
    with _running(["stage=infer", f"infer.load_model_path={model / 'best.pt'}", f"infer.test_path={test}",
                   f"infer.prediction_path={predictions}", "hardware.num_threads=1"], tmp_path / "run") as run:
        _wait_for(lambda: (tmp_path / "run" / "config.yaml").is_file(), "the run to start", run)
        stderr = _stop(run, signal.SIGINT)
    [line] = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert line.startswith("interrupted by SIGINT"), line
    assert not predictions.exists() and leftovers(tmp_path) == []
