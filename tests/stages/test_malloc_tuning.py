"""main.py restarts itself once with glibc malloc settings that keep training memory flat -- only when it
is the process's own script; otherwise it sets what mallopt can."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from uer.errors import UerError
from uer.malloc_tuning import (MALLOPT, SWITCH, TUNABLES, is_process_script, process_script, run_time_settings,
                               tuned_environment, uses_glibc)
from uer_testing import ROOT, SMALL, compose_config, error_lines, run_main
from uer.app import run_stage

ALL = ":".join(f"{name}={value}" for name, value in TUNABLES.items())


def test_the_tunables_are_added_and_the_restart_is_marked():
    env = tuned_environment({"PATH": "/bin"}, glibc=True)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": ALL, SWITCH: "applied"}


def test_the_users_own_tunables_win_and_are_kept():
    env = tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096:glibc.cpu.x86_ibt=on"}, glibc=True)
    tunables = env["GLIBC_TUNABLES"].split(":")
    assert tunables[:2] == ["glibc.malloc.mmap_threshold=4096", "glibc.cpu.x86_ibt=on"]
    assert f"glibc.malloc.mmap_threshold={TUNABLES['glibc.malloc.mmap_threshold']}" not in tunables
    assert "glibc.malloc.tcache_count=0" in tunables


def test_a_legacy_variable_counts_as_set():
    env = tuned_environment({"MALLOC_MMAP_THRESHOLD_": "65536"}, glibc=True)
    assert "glibc.malloc.mmap_threshold" not in env["GLIBC_TUNABLES"]


def test_no_restart_when_the_thread_cache_is_set_but_the_thresholds_are_set_at_run_time():
    environ = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=1"}
    assert tuned_environment(environ, glibc=True) is None
    mmap = "glibc.malloc.mmap_threshold"
    assert run_time_settings(environ, glibc=True) == {MALLOPT[mmap]: int(TUNABLES[mmap])}
    assert run_time_settings({}, glibc=True) == {MALLOPT["glibc.malloc.mmap_threshold"]: 32 * 2**20,
                                                 MALLOPT["glibc.malloc.trim_threshold"]: 2**31 - 1}  # a C int
    assert run_time_settings({SWITCH: "0"}, glibc=True) == run_time_settings({}, glibc=False) == {}
    assert run_time_settings({SWITCH: "applied"}, glibc=True) == {}  # the restart set them


@pytest.mark.parametrize("environ,glibc", [
    ({SWITCH: "0"}, True),  # switched off
    ({SWITCH: "Off"}, True),
    ({SWITCH: "applied", "GLIBC_TUNABLES": ""}, True),  # already restarted once: never loop
    ({"GLIBC_TUNABLES": ALL}, True),  # nothing missing
    ({}, False),  # not glibc
])
def test_no_restart_when_nothing_is_to_change(environ, glibc):
    assert tuned_environment(environ, glibc) is None


def test_an_unknown_switch_value_is_refused_naming_the_variable():
    with pytest.raises(UerError, match=f"{SWITCH}='maybe'.*set it to 0"):
        tuned_environment({SWITCH: "maybe"}, glibc=True)


def test_main_py_stops_with_one_line_on_an_unknown_switch_value(tmp_path, monkeypatch):
    monkeypatch.setenv(SWITCH, "maybe")
    proc = run_main(["stage=preprocess", f"preprocess.dataset_path={tmp_path / 'data'}"], tmp_path / "run", timeout=60)
    assert proc.returncode == 2
    assert error_lines(proc) == [f"error: environment variable {SWITCH}='maybe' is not understood; "
                                 "set it to 0 to keep glibc's malloc defaults, or unset it"]
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def mlm_data(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    lines = (ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:100]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tmp_path_factory.mktemp("data") / "mlm"
    run_stage(compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={data}",
                              "preprocess.seq_length=32"]))
    return data


@pytest.mark.skipif(not uses_glibc(), reason="the settings are glibc's")
@pytest.mark.parametrize("switch,expected", [(None, "glibc malloc tuned"), ("0", "glibc malloc at its defaults")])
def test_main_py_runs_training_with_the_settings_unless_switched_off(switch, expected, mlm_data, tmp_path, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    if switch is None:
        monkeypatch.delenv(SWITCH, raising=False)
    else:
        monkeypatch.setenv(SWITCH, switch)
    proc = run_main(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                     "pretrain.total_steps=2", "pretrain.batch_size=4", f"output_model_path={tmp_path / 'model'}"],
                    tmp_path / "run", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"memory: {expected}" in proc.stdout + proc.stderr
    assert (tmp_path / "model" / "step_2.pt").exists()


# ----------------------------------------------------------------------------- whose process it is

@pytest.mark.parametrize("argv,script", [
    (["python", "main.py", "stage=pretrain"], "main.py"),
    (["python", "-X", "dev", "-W", "ignore", "-u", "main.py"], "main.py"),
    (["python", "-Xdev", "-Wignore", "-bbO", "/repo/main.py", "-m"], "/repo/main.py"),
    (["python", "--check-hash-based-pycs", "always", "main.py"], "main.py"),
    (["python", "--", "main.py"], "main.py"),
    (["python", "-m", "pdb", "main.py"], None),  # a debugger's process
    (["python", "-Im", "debugpy", "--listen", "5678", "main.py"], None),
    (["python", "-c", "import runpy", "main.py"], None),
    (["python", "-"], None),
    (["python"], None),
    (["/usr/bin/ipython"], None),
])
def test_the_script_of_an_interpreter_command_line(argv, script):
    assert process_script(argv) == script


def test_only_this_interpreter_running_this_script_is_the_process_own(tmp_path):
    main = str(ROOT / "main.py")
    assert is_process_script(main, [sys.executable, "-u", main, "stage=infer"], sys.executable)
    assert not is_process_script(main, [sys.executable, str(tmp_path / "host.py")], sys.executable)
    assert not is_process_script(main, [str(tmp_path / "embedding-host"), main], sys.executable)
    assert not is_process_script(main, [], sys.executable)
    assert not is_process_script(main, [sys.executable, main], "")


HOST = """
import runpy, sys
print("host starts", flush=True)
sys.argv = [{main!r}, "hydra.run.dir={run}", "stage=infer"]
try:
    runpy.run_path({main!r}, run_name="__main__")
except SystemExit as stop:
    print("main.py exited", stop.code)
from uer import malloc_tuning
print("memory:", malloc_tuning.describe())
"""


@pytest.mark.skipif(not uses_glibc(), reason="the settings are glibc's")
def test_main_py_run_through_runpy_never_restarts_its_host_and_sets_the_thresholds(tmp_path):
    host = tmp_path / "host.py"
    host.write_text(HOST.format(main=str(ROOT / "main.py"), run=tmp_path / "run"), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in (SWITCH, "GLIBC_TUNABLES")}
    proc = subprocess.run([sys.executable, str(host)], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines.count("host starts") == 1, proc.stdout
    assert "main.py exited 2" in lines  # stage=infer without infer.load_model_path: one error line
    assert "memory: glibc malloc thresholds fixed at run time" in proc.stdout


MALLOC_PROBE = """
import ctypes, sys
from uer import malloc_tuning

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.malloc.argtypes = Info, ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "set":
    assert malloc_tuning.set_at_run_time(malloc_tuning.run_time_settings({}, glibc=True))
before = libc.mallinfo2()
block = libc.malloc(4 * 2**20)
mapped = libc.mallinfo2().hblkhd - before.hblkhd  # 0 when the block came from the heap
libc.free(block)
kept = libc.mallinfo2().arena - before.arena  # heap bytes still held after the free: the trim threshold
print(mapped, kept)
"""


@pytest.mark.skipif(not uses_glibc(), reason="the settings are glibc's")
def test_the_thresholds_take_effect_without_a_restart(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in (SWITCH, "GLIBC_TUNABLES")}
    mapped, kept = {}, {}
    for mode in ("set", "defaults"):
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(MALLOC_PROBE), mode], cwd=tmp_path,
                              env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        mapped[mode], kept[mode] = map(int, proc.stdout.split())
    assert mapped == {"set": 0, "defaults": pytest.approx(4 * 2**20, rel=0.01)}
    assert kept["set"] > 3 * 2**20 and kept["defaults"] < 2**20
