"""The Benchmarks table (docs/benchmarks.md, linked from the README) is generated from bench/results.json,
whose figures come from the bench scripts (python bench/run_all.py); nothing here times anything."""

import json
import re
import subprocess
import sys
from dataclasses import asdict

import pytest

from uer_testing import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import results  # noqa: E402  (bench/results.py)
import suite  # noqa: E402


def test_benchmarks_table_is_the_one_generated_from_the_committed_results():
    assert results.TABLE_DOC == ROOT / "docs" / "benchmarks.md"
    doc = results.TABLE_DOC.read_text(encoding="utf-8")
    assert results.table_in(doc) == results.render(results.load()), (
        "the Benchmarks table in docs/benchmarks.md differs from bench/results.json: "
        "regenerate it with `python bench/results.py` "
        "(or measure with `python bench/run_all.py`)")


def test_every_recorded_bench_says_how_where_and_when_it_was_measured():
    for name, entry in results.load()["benches"].items():
        for key in ("title", "reference", "command", "date", "device", "threads", "torch", "machine", "provisional"):
            assert entry.get(key) not in (None, ""), (name, key)
        script = entry["command"].split()[1]
        assert entry["command"].startswith("python bench/") and (ROOT / script).is_file(), entry["command"]
        assert entry["figures"], name
        for figure in entry["figures"]:
            if figure["reference_value"] is None:
                assert figure["ratio"] is None and figure["goal"] is None, (name, figure["name"])
            else:
                assert figure["ratio"] == pytest.approx(figure["value"] / figure["reference_value"]), (name, figure)


def entry(figures, provisional=False):
    return {"title": "t", "reference": "r", "command": "python bench/x.py", "date": "2026-01-02T03:04:05+00:00",
            "device": "cpu", "threads": 2, "torch": "2.13.0", "provisional": provisional, "load_before": 0.1,
            "machine": {"cpu": "CPU", "cores": 2, "python": "3.11", "torch": "2.13.0"},
            "figures": [asdict(f) for f in figures]}


def test_render_marks_goals_estimates_and_provisional_numbers():
    figures = [results.Figure("a", 130.0, "tokens/s", "peer", 100.0, goal=1.15),
               results.Figure("b", 100.0, "tokens/s", "peer", 100.0, goal=1.15),
               results.Figure("c", 2.9, "GiB", at_most=3.0),
               results.Figure("d", 5.0, "batches/s", "GPU steps/s", 10.0, estimate=True),
               results.Figure("e", 80.0, "GFLOP/s", "matmul", 100.0, goal=0.85, fraction=True)]
    table = results.render({"schema": results.SCHEMA, "benches": {"x": entry(figures, provisional=True)}})
    assert "a: 130 tokens/s vs peer 100 = **1.30x** (goal 1.15x: met)" in table
    assert "b: 100 tokens/s vs peer 100 = **1.00x** (goal 1.15x: **not met**)" in table
    assert "c: 2.90 GiB (goal at most 3.00 GiB: met)" in table
    assert "e: 80.0 GFLOP/s vs matmul 100 = **0.80** (goal 0.85: **not met**)" in table
    assert "(estimate, not measured)" in table and "**provisional**" in table


def test_benches_of_the_set_without_results_say_not_measured():
    table = results.render({"schema": results.SCHEMA, "benches": {}})
    assert table.count("not measured yet") == len(suite.SUITE) + len(suite.GPU)
    for title in suite.GPU.values():
        assert f"| {title}<br>`bash bench/gpu.sh` | — | not measured yet |" in table
    gpu = dict(entry([results.Figure("a", 1.0, "tokens/s", "peer", 1.0)]), device="cuda")
    table = results.render({"schema": results.SCHEMA, "benches": {next(iter(suite.GPU)): gpu}})
    assert table.count("not measured yet") == len(suite.SUITE) + len(suite.GPU) - 1


def test_a_results_file_that_cannot_take_the_figures_stops_the_bench_before_it_runs(tmp_path):
    not_json = tmp_path / "notes.json"
    not_json.write_text("my notes, not a results file\n", encoding="utf-8")
    other_schema = tmp_path / "other.json"
    other_schema.write_text('{"schema": 99}\n', encoding="utf-8")
    for path, fragment in ((not_json, "is not a results file"), (other_schema, "schema 99")):
        with pytest.raises(SystemExit) as stopped:
            results.Recorder("x", "t", "r", str(path))
        assert str(path) in str(stopped.value) and fragment in str(stopped.value)
    assert not_json.read_text(encoding="utf-8") == "my notes, not a results file\n"
    proc = subprocess.run([sys.executable, "bench/run_all.py", "--only", "encoders", "--json", str(not_json)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "===" not in proc.stdout, proc.stdout  # no bench started
    assert proc.stderr.strip().splitlines() == [f"{not_json} is not a results file (Expecting value: line 1 "
                                                "column 1 (char 0)); give --json a new path or a results file"]


def test_recorded_figures_merge_into_the_results_file_beside_the_other_benches(tmp_path):
    path = tmp_path / "results.json"
    for bench, value in (("a", 1.0), ("b", 2.0), ("a", 3.0)):
        recorder = results.Recorder(bench, "t", "r", str(path))
        recorder.add("f", value, "tokens/s")
        recorder.save()
    benches = results.load(path)["benches"]
    assert {name: entry["figures"][0]["value"] for name, entry in benches.items()} == {"a": 3.0, "b": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left beside it


def test_every_bench_of_the_set_records_its_figures():
    for name, (command, quick) in suite.SUITE.items():
        assert command[0] == quick[0], name
        source = (ROOT / "bench" / command[0]).read_text(encoding="utf-8")
        assert "results.add_arguments(parser)" in source and ".save()" in source, name
        assert 'if __name__ == "__main__":\n    main()' in source, name


def test_gpu_script_commands_name_existing_scripts_and_options():
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run"], capture_output=True, text=True,
                         check=True).stdout
    commands = [line[2:].split() for line in out.splitlines() if line.startswith("+ python bench/")]
    assert {c[1] for c in commands} >= {"bench/pretrain_speed.py", "bench/finetune_speed.py", "bench/results.py"}
    for command in commands:
        source = (ROOT / command[1]).read_text(encoding="utf-8")
        if "common.add_decoding_arguments(" in source:  # the decoding benches' shared options
            source += (ROOT / "bench" / "common.py").read_text(encoding="utf-8")
        for option in (arg for arg in command[2:] if arg.startswith("--")):
            assert re.search(rf'"{option}"', source) or option in ("--json", "--provisional"), (command[1], option)


SCRIPTS = sorted({command[0] for command, _ in suite.SUITE.values()})


# Runs each script as ``python bench/SCRIPT --help`` runs it (its folder first on sys.path, as __main__), one after
# another in one interpreter: torch is started once for all of them, not once per script.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys, traceback
bench, scripts = sys.argv[1], sys.argv[2:]
sys.path.insert(0, bench)
results = {}
for script in scripts:
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [f"{bench}/{script}", "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(f"{bench}/{script}", run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[script] = (code, out.getvalue(), err.getvalue())
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def help_runs():
    """``{script: (exit code, stdout, stderr)}`` of each bench script run with ``--help`` (HELP_DRIVER)."""
    proc = subprocess.run([sys.executable, "-c", HELP_DRIVER, str(ROOT / "bench"), *SCRIPTS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {script: tuple(result) for script, result in json.loads(proc.stdout).items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_imports_and_parses_its_options(script, help_runs):
    """What breaks a bench at start-up (an API it calls at import, its argument parser) shows here; the
    whole set end to end is ``python bench/run_all.py --quick --json FILE`` (minutes, not run by the tests)."""
    returncode, stdout, stderr = help_runs[script]
    assert returncode == 0, stderr[-2000:]
    assert "usage:" in stdout
