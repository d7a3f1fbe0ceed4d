"""End to end: a parallel corpus preprocessed for target=seq2seq pre-trains the encoder-decoder model
(decoder=transformer); its checkpoints record the decoder, and a stopped run resumes to the uninterrupted run's
weights exactly.  Targets longer than the decoder's positions are refused before work."""

import json

import pytest
import torch

from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint, step_checkpoints
from uer_testing import ROOT, compose_config, error_lines, run_main

pytestmark = pytest.mark.e2e

PARALLEL = ROOT / "datasets/test_data/parallel/train.tsv"


@pytest.fixture(scope="module")
def parallel_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq2seq") / "data"
    run_stage(compose_config(["stage=preprocess", "target=seq2seq", f"preprocess.corpus_path={PARALLEL}",
                              f"preprocess.dataset_path={path}", "preprocess.seq_length=32"]))
    return path


def pretrain(data, out, *extra):
    run_stage(compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke",
                              "hardware.num_threads=1", f"pretrain.dataset_path={data}", "pretrain.total_steps=4",
                              "pretrain.save_checkpoint_steps=2", "pretrain.report_steps=2",
                              "pretrain.batch_size=8", "model.max_seq_length=64", f"output_model_path={out}", *extra]))


def test_seq2seq_pretrains_and_resumes_bit_identically(tmp_path, parallel_data):
    straight, split = tmp_path / "straight", tmp_path / "split"
    pretrain(parallel_data, straight)
    pretrain(parallel_data, split, "pretrain.stop_after_steps=2")
    assert [step for step, _ in step_checkpoints(split)] == [2]
    pretrain(parallel_data, split, "resume=true")
    a, b = load_checkpoint(straight / "step_4.pt"), load_checkpoint(split / "step_4.pt")
    decoder = a["config"]["decoder"]
    assert decoder["type"] == "transformer" and decoder["start_id"] == 101  # the bundled vocabulary's [CLS]
    assert any(key.startswith("decoder.transformer.0.context_attn.") for key in a["model"])
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    early = load_checkpoint(straight / "step_2.pt")["model"]
    assert any(not torch.equal(early[key], a["model"][key]) for key in a["model"])


def test_targets_longer_than_the_decoders_positions_are_refused_before_work(tmp_path):
    data, model = tmp_path / "data", tmp_path / "model"
    run_stage(compose_config(["stage=preprocess", "target=seq2seq", f"preprocess.corpus_path={PARALLEL}",
                              f"preprocess.dataset_path={data}", "preprocess.seq_length=16",
                              "preprocess.tgt_seq_length=48"]))
    assert json.loads((data / "meta.json").read_text())["tgt_seq_length"] == 48
    proc = run_main(["stage=pretrain", "decoder=transformer", "target=seq2seq", "size=smoke", "hardware.num_threads=1",
                     f"pretrain.dataset_path={data}", "pretrain.total_steps=1", "model.max_seq_length=32",
                     f"output_model_path={model}"], tmp_path / "run")
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "tgt_seq_length" in lines[0] and "only 32 positions" in lines[0] and "model.max_seq_length" in lines[0]
    assert not model.exists()
