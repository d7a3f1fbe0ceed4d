"""main.py restarts itself once with glibc malloc settings that keep training memory flat."""

from __future__ import annotations

import pytest

from uer.errors import UerError
from uer.malloc_tuning import SWITCH, TUNABLES, tuned_environment, uses_glibc
from uer_testing import ROOT, SMALL, compose_config, error_lines, run_main
from uer.stages import run_stage

ALL = ":".join(f"{name}={value}" for name, value in TUNABLES.items())


def test_the_tunables_are_added_and_the_restart_is_marked():
    env = tuned_environment({"PATH": "/bin"}, glibc=True)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": ALL, SWITCH: "applied"}


def test_the_users_own_tunables_win_and_are_kept():
    env = tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3:glibc.cpu.x86_ibt=on"}, glibc=True)
    tunables = env["GLIBC_TUNABLES"].split(":")
    assert tunables[:2] == ["glibc.malloc.tcache_count=3", "glibc.cpu.x86_ibt=on"]
    assert "glibc.malloc.tcache_count=0" not in tunables
    assert f"glibc.malloc.mmap_threshold={TUNABLES['glibc.malloc.mmap_threshold']}" in tunables


def test_a_legacy_variable_counts_as_set():
    env = tuned_environment({"MALLOC_MMAP_THRESHOLD_": "65536"}, glibc=True)
    assert "glibc.malloc.mmap_threshold" not in env["GLIBC_TUNABLES"]


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
