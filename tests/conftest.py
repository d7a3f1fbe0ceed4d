"""Inputs several test files read, each built once per session (tests only read them; see tests/README.md)."""

import pytest

from uer.app import run_stage
from uer_testing import ROOT, compose_config


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory):
    """The first 300 lines of corpora/book_review.txt preprocessed for target=mlm: dynamic masking, seq_length 32."""
    tmp = tmp_path_factory.mktemp("book_review_mlm")
    corpus = tmp / "corpus.txt"
    lines = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()[:300]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_stage(compose_config(["stage=preprocess", "target=mlm", f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={tmp / 'data'}", "preprocess.seq_length=32",
                              "preprocess.dynamic_masking=true"]))
    return tmp / "data"
