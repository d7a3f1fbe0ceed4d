"""Held-out evaluation in a multi-process run on CPU (gloo): each rank scores a shard, all agree on one number."""

import json

import pytest

from uer.app import run_stage
from uer_testing import ROOT, SMALL, compose_config

pytestmark = pytest.mark.e2e

STEPS = 2


@pytest.fixture(scope="module")
def dev_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dev")
    corpus = directory / "corpus.txt"
    lines = (ROOT / "corpora" / "book_review.txt").read_text(encoding="utf-8").splitlines()[300:341]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_stage(compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus}", "preprocess.seq_length=32",
                              f"preprocess.dataset_path={directory / 'data'}", "preprocess.dynamic_masking=true"]))
    return directory / "data"


def heldout(data, dev, out, *extra):
    """The held-out records of a run whose two-process and accumulating forms train the same weights
    (tests/distributed/test_distributed.py: dropout off, no length bucketing)."""
    run_stage(compose_config(["stage=pretrain", "size=tiny", *SMALL, "model.dropout=0.0",
                              f"pretrain.dataset_path={data}", f"pretrain.dev_dataset_path={dev}",
                              f"pretrain.total_steps={STEPS}", "pretrain.save_checkpoint_steps=1",
                              "pretrain.batch_size=4", "pretrain.length_bucketing=false", "hardware.num_threads=1",
                              f"output_model_path={out}", *extra]))
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_two_ranks_report_the_single_process_heldout_loss(tmp_path, mlm_data, dev_data):
    two = heldout(mlm_data, dev_data, tmp_path / "two", "hardware.nproc_per_node=2", "pretrain.keep_best=true")
    one = heldout(mlm_data, dev_data, tmp_path / "one", "pretrain.accumulation_steps=2")
    assert (tmp_path / "two" / "best.pt").is_file()  # every rank took part in writing it
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2]  # rank 0 alone writes them
    for mine, single in zip(two, one):
        assert mine.keys() == single.keys()
        for key in ("loss", "mlm_loss", "mlm_acc", "mlm_ppl"):
            assert mine[key] == pytest.approx(single[key], rel=1e-4), key
