"""target=prefixlm end to end: preprocess a source<TAB>target corpus (in-process, two processes), pre-train a few
steps at size=smoke on one stack with encoder.mask=causal_with_prefix, resume bit-identically; its bad inputs."""

import json

import pytest
import torch

from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint, step_checkpoints
from uer.models.compat import IncompatibleModel, check_model
from uer.models.encoders import attention_mask
from uer_testing import ROOT, compose_config, expect_user_error

pytestmark = pytest.mark.e2e

PARALLEL = ROOT / "datasets/test_data/parallel/train.tsv"


@pytest.fixture(scope="module")
def prefix_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("prefixlm") / "data"
    run_stage(compose_config(["stage=preprocess", "target=prefixlm", f"preprocess.corpus_path={PARALLEL}",
                              f"preprocess.dataset_path={data}", "preprocess.seq_length=48",
                              "preprocess.processes_num=2"]))
    return data


def _train_cfg(data, model, *extra):
    return compose_config(["stage=pretrain", "encoder=bert", "encoder.mask=causal_with_prefix", "size=smoke",
                           "target=prefixlm", f"pretrain.dataset_path={data}", "pretrain.total_steps=4",
                           "pretrain.batch_size=4", "pretrain.report_steps=2", "pretrain.save_checkpoint_steps=2",
                           f"output_model_path={model}", *extra])


def test_prefixlm_pretrains_and_resumes_bit_identically(tmp_path, prefix_data):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_stage(_train_cfg(prefix_data, straight))
    run_stage(_train_cfg(prefix_data, split, "pretrain.stop_after_steps=2"))
    assert [s for s, _ in step_checkpoints(split)] == [2]
    run_stage(_train_cfg(prefix_data, split, "resume=true"))
    a, b = load_checkpoint(straight / "step_4.pt")["model"], load_checkpoint(split / "step_4.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    early = load_checkpoint(straight / "step_2.pt")["model"]
    assert any(not torch.equal(early[key], a[key]) for key in a)
    reports = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in reports] == [2, 4] and all(r["prefixlm_loss"] > 0 for r in reports)


@pytest.mark.parametrize("encoder", ["encoder=bert", "encoder=gpt"])
def test_prefixlm_refuses_an_encoder_without_the_prefix_mask(tmp_path, encoder):
    cfg = compose_config(["stage=pretrain", encoder, "size=smoke", "target=prefixlm"])
    with pytest.raises(IncompatibleModel, match=r"target=prefixlm needs .*\(encoder.mask=causal_with_prefix\)"):
        check_model(cfg.embedding, cfg.encoder, cfg.target)


def test_a_line_without_the_target_column_stops_preprocess(tmp_path, capsys):
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("一个源\t一个目标\n\n只有源没有目标\n", encoding="utf-8")
    cfg = compose_config(["stage=preprocess", "target=prefixlm", f"preprocess.corpus_path={corpus}",
                          f"preprocess.dataset_path={tmp_path / 'data'}"])
    expect_user_error(capsys, cfg, f"{corpus}:3: a target=prefixlm corpus line is source<TAB>target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


def test_prefix_mask_reads_the_prefix_both_ways_and_the_rest_left_to_right():
    seg = torch.tensor([[1, 1, 1, 2, 2, 0], [1, 1, 2, 2, 2, 2]])
    mask, is_causal = attention_mask(seg, causal=False, prefix=True)
    assert not is_causal
    expected_first = torch.tensor([[1, 1, 1, 0, 0, 0],
                                   [1, 1, 1, 0, 0, 0],
                                   [1, 1, 1, 0, 0, 0],
                                   [1, 1, 1, 1, 0, 0],
                                   [1, 1, 1, 1, 1, 0],
                                   [1, 1, 1, 1, 1, 0]], dtype=torch.bool)  # the last row: padding, as lm's
    expected_second = torch.tensor([[1, 1, 0, 0, 0, 0],
                                    [1, 1, 0, 0, 0, 0],
                                    [1, 1, 1, 0, 0, 0],
                                    [1, 1, 1, 1, 0, 0],
                                    [1, 1, 1, 1, 1, 0],
                                    [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected_first) and torch.equal(mask[1, 0], expected_second)
