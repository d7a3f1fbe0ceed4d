"""``hardware.compile=true`` through the stages: a pre-training and a fine-tuning run over batches of
several lengths compile a bounded number of graphs (not one per length) and report the eager run's
losses; with activation checkpointing too; a backend torch does not have is one line.

Graphs are counted with a backend of our own handed to ``torch.compile`` (public API): it sees every
graph Dynamo compiles and runs it as traced, so its losses are the eager ones.  The real compiler path
runs with ``hardware.compile_backend=aot_eager``, which traces forward and backward as inductor does
without generating code (inductor itself takes minutes to compile on a CPU; bench/pretrain_speed.py
--compile runs it)."""

import json

import pytest
import torch

from uer.app import run_stage
from uer.training import trainer as trainer_module
from uer_testing import SMALL, book_review_slices, compose_config, expect_user_error

NO_DROPOUT = ["model.dropout=0.0", "hardware.num_threads=1"]  # compiled dropout draws other random numbers


@pytest.fixture
def counted(monkeypatch):
    """The graphs ``torch.compile`` compiles (input shapes of each) and the lengths of the batches trained."""
    graphs, lengths = [], []
    compile_ = torch.compile

    def counting_backend(graph_module, example_inputs):
        graphs.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
        return graph_module.forward

    def counting_compile(model, **options):
        return compile_(model, **{**options, "backend": counting_backend})

    to_device = trainer_module.to_device

    def recording_to_device(batch, device):
        lengths.append(batch["src"].shape[1])
        return to_device(batch, device)

    monkeypatch.setattr(torch, "compile", counting_compile)
    monkeypatch.setattr(trainer_module, "to_device", recording_to_device)
    return graphs, lengths


def losses(out, key):
    return [json.loads(line)[key] for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if "split" not in json.loads(line)]


def pretrain(data, out, *extra):
    run_stage(compose_config(["stage=pretrain", "size=tiny", *SMALL, *NO_DROPOUT, f"pretrain.dataset_path={data}",
                              "pretrain.total_steps=10", "pretrain.batch_size=8", "pretrain.report_steps=1",
                              f"output_model_path={out}", *extra]))
    return losses(out, "mlm_loss")


def test_pretraining_compiles_two_graphs_over_many_lengths_and_reports_the_eager_losses(tmp_path, mlm_data, counted):
    graphs, lengths = counted
    eager = pretrain(mlm_data, tmp_path / "eager")
    lengths.clear()
    compiled = pretrain(mlm_data, tmp_path / "compiled", "hardware.compile=true")
    assert len(set(lengths)) >= 4, lengths  # precondition: batches of several lengths
    # The first batch's shape, then one graph with the length symbolic that every later length reuses.
    assert len(graphs) == 2, graphs
    assert compiled == pytest.approx(eager, rel=1e-6)


def test_aot_eager_traces_forward_and_backward_and_gives_the_eager_losses(tmp_path, mlm_data):
    eager = pretrain(mlm_data, tmp_path / "eager", "pretrain.total_steps=4")
    compiled = pretrain(mlm_data, tmp_path / "compiled", "pretrain.total_steps=4", "hardware.compile=true",
                        "hardware.compile_backend=aot_eager")
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_compile_with_activation_checkpointing_gives_the_eager_losses(tmp_path, mlm_data):
    checkpointed = ["pretrain.total_steps=4", "hardware.activation_checkpointing=true"]
    eager = pretrain(mlm_data, tmp_path / "eager", *checkpointed)
    compiled = pretrain(mlm_data, tmp_path / "compiled", *checkpointed, "hardware.compile=true",
                        "hardware.compile_backend=aot_eager")
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_finetuning_compiles_a_bounded_number_of_graphs_and_reports_the_eager_losses(tmp_path, counted):
    graphs, lengths = counted
    data = book_review_slices(tmp_path, train=60, dev=16)  # 60 rows in batches of 8: 7 steps an epoch

    def finetune(out, *extra):
        run_stage(compose_config(["stage=finetune", "task=classifier", "size=tiny", *SMALL, *NO_DROPOUT,
                                  f"finetune.train_path={data['train']}", f"finetune.dev_path={data['dev']}",
                                  "finetune.seq_length=64", "finetune.batch_size=8", "finetune.epochs_num=2",
                                  "finetune.report_steps=1", "finetune.learning_rate=1e-3", f"output_model_path={out}",
                                  *extra]))
        return losses(out, "cls_loss")

    eager = finetune(tmp_path / "eager")
    lengths.clear()
    compiled = finetune(tmp_path / "compiled", "hardware.compile=true")
    assert len(set(lengths)) >= 4, lengths
    # The first batch's shape, then one graph with the length symbolic; the dev evaluations after each
    # epoch run the eager model and compile nothing.
    assert len(graphs) == 2, graphs
    assert len(compiled) == 14 and compiled == pytest.approx(eager, rel=1e-6)


def test_a_backend_torch_does_not_have_is_one_line(tmp_path, mlm_data, capsys):
    cfg = compose_config(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                          f"output_model_path={tmp_path / 'm'}", "hardware.compile=true",
                          "hardware.compile_backend=inductr"])
    expect_user_error(capsys, cfg, "hardware.compile_backend=inductr is not a torch.compile backend")
    assert not (tmp_path / "m").exists()
