"""The bundled default vocabulary is found from any working directory (issue 26)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from uer.paths import REPOSITORY, bundled_file
from uer_testing import ROOT

pytestmark = pytest.mark.e2e


def test_main_py_from_another_directory_finds_the_default_vocabulary(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    corpus = ROOT / "corpora" / "literature_mini.txt"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "stage=preprocess", f"preprocess.corpus_path={corpus}",
                           "preprocess.dataset_path=data/mlm", "preprocess.seq_length=32", "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "data" / "mlm" / "meta.json").is_file()  # relative outputs stay in the working directory
    log = (tmp_path / "run" / "main.log").read_text(encoding="utf-8")
    assert f"models/google_zh_vocab.txt is not in the working directory; using the bundled {ROOT}/models/" in log


def test_only_a_missing_relative_path_to_a_bundled_folder_is_redirected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundled_file("models/google_zh_vocab.txt") == REPOSITORY / "models" / "google_zh_vocab.txt"
    assert str(bundled_file("models/no_such_vocab.txt")) == "models/no_such_vocab.txt"
    assert str(bundled_file("corpora/book_review.txt")) == "corpora/book_review.txt"  # not a bundled default
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "google_zh_vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert str(bundled_file("models/google_zh_vocab.txt")) == "models/google_zh_vocab.txt"  # the user's own wins
