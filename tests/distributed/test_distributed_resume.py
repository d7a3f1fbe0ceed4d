"""Multi-process runs stopped and resumed end as the uninterrupted run: every rank's random state and the data
position are kept (pre-training, and fine-tuning stopped early); on CPU with gloo."""

import pytest
import torch

from uer.io.checkpoint import load_checkpoint
from uer.app import run_stage
from uer_testing import ROOT, SMALL, assert_close_weights, compose_config

pytestmark = pytest.mark.e2e

STEPS = 5


def test_resumed_two_process_run_equals_the_uninterrupted_one(tmp_path, mlm_data):
    """Each rank's RNG state is saved and restored, so both ranks' dropout continues as if never stopped."""
    common = ["stage=pretrain", "size=tiny", *SMALL, "model.dropout=0.1", f"pretrain.dataset_path={mlm_data}",
              f"pretrain.total_steps={STEPS}", "pretrain.report_steps=1", "pretrain.batch_size=4",
              "hardware.nproc_per_node=2", "hardware.num_threads=1"]
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'whole'}"]))
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'split'}", "pretrain.stop_after_steps=2"]))
    run_stage(compose_config([*common, f"output_model_path={tmp_path / 'split'}", "resume=true"]))
    assert_close_weights(load_checkpoint(tmp_path / "whole" / f"step_{STEPS}.pt"),
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
