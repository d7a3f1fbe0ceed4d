"""A fine-tuning stopped before its first last.pt (killed, or out of disk, between best.pt and last.pt):
a fresh run is refused with advice that works, and resume=true starts it again without hand deletion
(issue 26)."""

from __future__ import annotations

import hashlib

import pytest

from uer import app
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines, run_main

pytestmark = pytest.mark.e2e

DATA = ROOT / "datasets" / "test_data" / "book_review"
FINETUNE = ["task=classifier", "size=tiny", *SMALL, "hardware.num_threads=1", "finetune.seq_length=16",
            "finetune.batch_size=16", "finetune.epochs_num=1", f"finetune.train_path={DATA / 'train.tsv'}",
            f"finetune.dev_path={DATA / 'dev.tsv'}", f"tokenizer.vocab_path={VOCAB}"]


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_run_stopped_before_its_first_last_pt_is_started_again_by_resume(tmp_path, caplog):
    out = tmp_path / "clf"
    # The runs that train are in-process; the refused one is main.py's (its one line on the terminal, exit 2).
    app.run_stage(compose_config([*FINETUNE, f"output_model_path={out}"]))
    # What a run killed while writing its first last.pt leaves: best.pt, half a last.pt in its temporary file.
    (out / "last.pt").unlink()
    (out / ".last.pt.k3j9x0ab.tmp").write_bytes(b"half a checkpoint")
    before = digests(out)
    fresh = run_main([*FINETUNE, f"output_model_path={out}"], tmp_path / "run_b")
    assert fresh.returncode == 2 and "Traceback" not in fresh.stderr
    (line,) = error_lines(fresh)
    assert line == (f"error: output_model_path {out} already holds best.pt from an earlier run; resume=true starts "
                    "it again (it stopped before its first last.pt), or choose another output_model_path")
    assert digests(out)["best.pt"] == before["best.pt"]  # (the temporary file is cleaned up by any run there)
    with caplog.at_level("INFO"):
        app.run_stage(compose_config([*FINETUNE, f"output_model_path={out}", "resume=true"]))
    assert (f"resume=true: {out} holds no last.pt, so the run there stopped before its first one was written; "
            "starting it again from step 0") in caplog.text
    # The half-written file removed (in-process, the run's own records are written there too).
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".pt", ".tmp")) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("left, advice", [
    ([], "nothing half-written is kept; run the command again"),
    (["best.pt"], "holds no last.pt yet; the same command with resume=true starts the run again"),
    (["best.pt", "last.pt"], "the same command with resume=true continues from the newest"),
])
def test_the_interrupted_line_gives_advice_that_works_for_what_was_left(tmp_path, left, advice):
    out = tmp_path / "clf"
    out.mkdir()
    for name in left:
        (out / name).write_bytes(b"a model")
    cfg = compose_config([*FINETUNE, f"output_model_path={out}"])
    assert advice in app._how_to_go_on(cfg)
