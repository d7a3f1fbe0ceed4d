"""bench/gpu.sh is the one prepared GPU run: its steps run here on the CPU (``--cpu-check``: the CUDA tests on the
CPU, each bench shrunk), so a step that would stop a GPU run stops this test first.  Nothing here is timed."""

import json
import subprocess
from pathlib import Path

from uer_testing import ROOT


def test_every_step_of_the_gpu_script_runs_on_the_cpu_and_records_its_bench():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--cpu-check"], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step(s) failed" not in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("cpu-check: the steps ran on the CPU; results (not measurements) in ")
    scratch = Path(last.rsplit(" ", 1)[1])
    try:
        benches = json.loads(scratch.read_text(encoding="utf-8"))["benches"]
    finally:
        scratch.unlink()
    # The CPU stand-ins of the GPU benches: each script ran to the end and saved its figures.
    assert {"pretrain_tiny", "finetune_tiny", "seq2seq"} <= set(benches)
    for name in ("pretrain_tiny", "finetune_tiny", "seq2seq"):
        assert benches[name]["figures"] and benches[name]["device"] == "cpu", name
    assert [f["name"] for f in benches["seq2seq"]["figures"]] == [
        "training (forward, backward, AdamW)", "generation, greedy", "generation, beam 4"]
