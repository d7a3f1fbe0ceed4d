"""One run, one truth: what a run's config says is what runs, and nothing else gets in.

Each test is one way a run used to end "done" with a result that did not belong to its
config; see the issue "One run, one truth".
"""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest
import torch
from omegaconf import OmegaConf

from uer.cli import normalize_overrides, preflight
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.models import build_backbone, build_model
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, SMALL, VOCAB, compose_config, error_lines, run_main, save_model_checkpoint

DATA = ROOT / "datasets" / "test_data" / "book_review"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1"]
TRAIN = [f"finetune.train_path={DATA / 'train.tsv'}", f"finetune.dev_path={DATA / 'dev.tsv'}"]


def refused(*overrides: str, multirun: bool = False) -> str:
    """The one-line error ``python main.py OVERRIDES`` stops with before any work."""
    with pytest.raises(UerError) as err:
        preflight(normalize_overrides(list(overrides)), multirun=multirun)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- keys that no schema of the run declares -------------------------------------------------

def test_a_key_of_another_encoder_is_refused_naming_the_encoder_it_belongs_to():
    message = refused("encoder=lstm", "encoder.synt_type=random")
    assert message.startswith("encoder.synt_type is a key of encoder=synt, not of encoder=lstm")


@pytest.mark.parametrize("override", ["+encoder.hiden_size=1", "encoder.hiden_size=1"])
def test_a_misspelt_key_is_refused_with_or_without_plus(override):
    assert refused(override) == "encoder.hiden_size is not a key of encoder=bert; did you mean encoder.hidden_size?"


@pytest.mark.parametrize("override", ["+foo=1", "foo=1"])
def test_an_unknown_top_level_key_is_refused(override):
    assert refused(override).startswith("foo is not a key of stage=pretrain")


def test_a_key_of_another_stage_points_to_this_stage_s_key():
    message = refused("stage=finetune", "pretrain.learning_rate=1")
    assert message == ("pretrain.learning_rate belongs to stage=pretrain, but this run is stage=finetune; "
                       "did you mean finetune.learning_rate?")


def test_a_stage_carries_only_its_own_sections():
    assert "pretrain" not in compose_config(["stage=finetune"]) and "task" not in compose_config(["stage=pretrain"])
    assert set(compose_config(["stage=infer"])) == {"stage", "seed", "hardware", "infer", "allow_nonfinite_weights"}


def test_a_value_of_the_wrong_type_is_refused_naming_key_and_value():
    assert refused("pretrain.learning_rate=abc").startswith("pretrain.learning_rate=abc: Value 'abc'")


def test_a_group_of_another_stage_names_the_stage():
    message = refused("stage=pretrain", "task=ner")
    assert message.startswith("task= is a choice of stage=finetune, but this run is stage=pretrain")


def test_an_option_that_does_not_exist_suggests_the_closest():
    assert refused("encoder=bret").startswith("encoder=bret is not an option; did you mean encoder=bert?")


def test_setting_type_instead_of_choosing_the_option_is_refused():
    assert refused("encoder.type=lstm").startswith("encoder.type=lstm does not match the encoder chosen (encoder=bert)")


def test_refusals_via_main_are_one_line_exit_2_and_write_nothing(tmp_path):
    proc = run_main(["encoder=lstm", "+encoder.synt_type=random"], tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert error_lines(proc) == ["error: encoder.synt_type is a key of encoder=synt, not of encoder=lstm; "
                                 "choose encoder=synt or drop encoder.synt_type"]
    assert not (tmp_path / "run").exists()


# --- the stage follows from the choice; presets as lightning-hydra-template -------------------

def test_task_implies_finetune_and_tool_implies_tool():
    assert normalize_overrides(["task=classifier_cv", "seed=3"]) == ["stage=finetune", "task=classifier_cv", "seed=3"]
    assert normalize_overrides(["tool=convert"]) == ["stage=tool", "tool=convert"]
    assert normalize_overrides(["stage=finetune", "task=ner"]) == ["stage=finetune", "task=ner"]
    cfg = compose_config(["task=classifier_cv", *TRAIN])
    assert cfg.stage == "finetune" and cfg.task.type == "classifier_cv" and "pretrain" not in cfg


@pytest.mark.parametrize("form", ["experiment", "+experiment"])
def test_experiment_works_with_and_without_plus(form):
    cfg = compose_config([f"{form}=lstm_douban"])
    assert (cfg.stage, cfg.encoder.type, cfg.task.type, cfg.task.pooling) == ("finetune", "lstm", "classifier", "mean")


def test_no_preset_pins_an_output_location():
    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        raw = OmegaConf.to_container(compose_config([f"experiment={path.stem}"]), resolve=False)
        assert raw.get("output_model_path") is None, path.name
        assert (raw.get("infer") or {}).get("prediction_path") is None, path.name
        assert (raw.get("task") or {}).get("train_features_path") is None, path.name


# --- the run owns its outputs; sweeps --------------------------------------------------------

def test_a_sweep_with_one_explicit_output_path_is_refused_before_any_job(tmp_path):
    message = refused("task=classifier", f"output_model_path={tmp_path / 'm'}", "seed=1,2", multirun=True)
    assert message.startswith(f"output_model_path={tmp_path / 'm'} is the same for every job of this sweep")
    # A per-job path is fine.
    preflight(normalize_overrides(["task=classifier", "output_model_path=m_${hydra:job.num}", "seed=1,2"]),
              multirun=True)
    # -m with one job (e.g. the README's SLURM command with an output path) shares it with nobody.
    preflight(normalize_overrides(["task=classifier", f"output_model_path={tmp_path / 'm'}"]), multirun=True)


def test_a_combination_one_job_of_a_sweep_cannot_train_stops_the_sweep_before_any_job():
    message = refused("stage=pretrain", "encoder=gpt,bert", "target=lm", multirun=True)
    assert message.startswith("job 1 of the sweep (encoder=bert): target=lm needs a causal encoder"), message
    assert "valid combinations" in message
    # from a checkpoint the architecture is the checkpoint's: prepare checks it once adopted
    preflight(normalize_overrides(["stage=pretrain", "encoder=bert", "target=lm", "pretrained_model_path=x.pt"]),
              multirun=False, machine=False)


def test_a_sweep_value_of_the_wrong_type_stops_the_sweep_before_any_job(tmp_path):
    message = refused("task=classifier", "finetune.learning_rate=1e-4,abc,3e-4", multirun=True)
    assert message.startswith("job 1 of the sweep (finetune.learning_rate=abc): finetune.learning_rate=abc")
    proc = run_main(["-m", "task=classifier", "finetune.learning_rate=1e-4,abc", f"hydra.sweep.dir={tmp_path / 'sw'}"],
                    tmp_path / "run")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1 and not (tmp_path / "sw").exists()


def test_sweep_over_a_preset_writes_one_checkpoint_per_job_and_the_table_s_best_is_its_score(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_main(["-m", "experiment=lstm_douban", "size=tiny", *SMALL, *FAST, *TRAIN,
                     "finetune.test_path=null", "finetune.learning_rate=1e-3,3e-5", f"hydra.sweep.dir={sweep_dir}"],
                    tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((sweep_dir / "results.csv").open(encoding="utf-8")))
    checkpoints = [row["checkpoint"] for row in rows]
    assert len(set(checkpoints)) == 2 and all(os.path.isfile(path) for path in checkpoints)
    best = next(row for row in rows if row["best"] == "best")
    predictions = tmp_path / "dev_pred.tsv"
    # The best job's checkpoint predicts in-process (the sweep was main.py's).
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={best['checkpoint']}",
                              f"infer.test_path={DATA / 'dev.tsv'}", f"infer.prediction_path={predictions}"]))
    predicted = [line for line in predictions.read_text(encoding="utf-8").splitlines()[1:]]
    gold = [line.split("\t")[0] for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert accuracy == pytest.approx(float(best["dev_acc"]), abs=1e-4)


# --- self-contained checkpoints ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    run_stage(compose_config(["task=classifier", *TRAIN, "size=tiny", *SMALL, *FAST, f"output_model_path={out}"]))
    return out / "best.pt"


def test_checkpoint_holds_the_whole_run_config_and_the_vocabulary(fine_tuned):
    payload = load_checkpoint(fine_tuned)
    config = payload["config"]
    assert {"stage", "seed", "model", "tokenizer", "embedding", "encoder", "task", "hardware", "optimizer",
            "lr_scheduler", "finetune"} <= set(config)
    assert config["finetune"]["batch_size"] == 16 and config["task"]["labels_num"] == 2
    assert payload["tokenizer"]["tokens"] == VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_checkpoint_files_honour_the_umask(tmp_path, mask):
    cfg = compose_config(["size=tiny", *SMALL])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(build_tokenizer(cfg.tokenizer).vocab))
    old = os.umask(mask)
    try:
        path = save_model_checkpoint(tmp_path / "m.pt", model, cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_infer_from_another_directory_with_no_tokenizer_keys_gives_the_same_predictions(fine_tuned, tmp_path,
                                                                                       monkeypatch):
    """main.py started in another directory predicts as a run from the repository root (the reference run is
    in-process, from the root; the one elsewhere is main.py's, whose working directory is the subject)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    infer = ["stage=infer", f"infer.load_model_path={fine_tuned}", f"infer.test_path={DATA / 'test_nolabel.tsv'}",
             "infer.output_logits=true"]
    with monkeypatch.context() as at_root:
        at_root.chdir(ROOT)
        run_stage(compose_config([*infer, f"infer.prediction_path={tmp_path / 'root.tsv'}"]))
    proc = _main_in(elsewhere, [*infer, f"infer.prediction_path={tmp_path / 'elsewhere.tsv'}",
                                f"hydra.run.dir={tmp_path / 'elsewhere.run'}"])
    assert proc.returncode == 0, proc.stderr
    outputs = [(tmp_path / name).read_text(encoding="utf-8") for name in ("root.tsv", "elsewhere.tsv")]
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 51


def _main_in(cwd, args):
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_version_1_checkpoint_still_predicts(fine_tuned, tmp_path):
    payload = load_checkpoint(fine_tuned)
    config = payload["config"]
    old = {"format": "uer-checkpoint", "version": 1, "model": payload["model"], "vocab": payload["vocab"],
           "trainer": None,
           "config": {"model": config["model"], "embedding": config["embedding"], "encoder": config["encoder"],
                      "tokenizer": {"type": "bert", "vocab_path": str(VOCAB), "spm_model_path": None,
                                    "do_lower_case": True},
                      "task": config["task"], "task_info": {"text_pair": False},
                      "finetune": {"seq_length": 32}}}
    torch.save(old, tmp_path / "old.pt")
    predictions = []
    for path in (fine_tuned, tmp_path / "old.pt"):
        out = tmp_path / f"{path.stem}.tsv"
        run_stage(compose_config(["stage=infer", f"infer.load_model_path={path}", f"infer.prediction_path={out}",
                                  f"infer.test_path={DATA / 'test_nolabel.tsv'}", "infer.output_logits=true"]))
        predictions.append(out.read_text(encoding="utf-8"))
    assert predictions[0] == predictions[1]


# --- a checkpoint sets the architecture; tunable settings apply -----------------------------

@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    cfg = compose_config(["size=tiny", *SMALL, "model.layers_num=1", "model.dropout=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(build_tokenizer(cfg.tokenizer).vocab))
    return save_model_checkpoint(tmp_path_factory.mktemp("pre") / "pre.pt", model, cfg)


def test_fine_tuning_from_a_checkpoint_takes_its_architecture_and_this_run_s_dropout(tiny_pretrained, tmp_path):
    out = tmp_path / "clf"
    run_stage(compose_config(["task=classifier", *TRAIN, *FAST, f"pretrained_model_path={tiny_pretrained}",
                              "model.dropout=0.23", f"output_model_path={out}"]))
    config = load_checkpoint(out / "best.pt")["config"]
    assert (config["encoder"]["hidden_size"], config["encoder"]["layers_num"]) == (32, 1)  # not size=base's
    assert config["encoder"]["dropout"] == config["embedding"]["dropout"] == config["model"]["dropout"] == 0.23
    backbone = build_backbone(config["embedding"], config["encoder"], 10)
    assert {module.p for module in backbone.modules() if isinstance(module, torch.nn.Dropout)} == {0.23}


def test_a_conflicting_architecture_override_is_refused_naming_the_key(tiny_pretrained, tmp_path):
    proc = run_main(["task=classifier", *TRAIN, *FAST, f"pretrained_model_path={tiny_pretrained}", "size=base"],
                    tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = error_lines(proc)[0]
    assert f"pretrained_model_path={tiny_pretrained} sets the architecture" in line
    assert "model.emb_size=768 (checkpoint: 32)" in line


# --- resume compares the training settings ----------------------------------------------------

def pretrain(dataset, out, *extra):
    return run_stage(compose_config(["size=tiny", *SMALL, "hardware.num_threads=1", f"pretrain.dataset_path={dataset}",
                                     "pretrain.batch_size=4", "pretrain.save_checkpoint_steps=2",
                                     f"output_model_path={out}", *extra]))


def test_resume_with_another_total_steps_is_refused_unless_allowed(mlm_data, tmp_path, capsys, caplog):
    out = tmp_path / "m"
    pretrain(mlm_data, out, "pretrain.total_steps=4", "pretrain.stop_after_steps=2")
    with pytest.raises(SystemExit) as exc:
        pretrain(mlm_data, out, "pretrain.total_steps=6", "resume=true")
    assert exc.value.code == 2
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")][0]
    assert "pretrain.total_steps: checkpoint 4, now 6" in line
    assert "resume_allow_changes=[pretrain.total_steps]" in line
    with caplog.at_level("WARNING", logger="uer.resume"):
        pretrain(mlm_data, out, "pretrain.total_steps=6", "resume=true", "resume_allow_changes=[pretrain.total_steps]")
    assert "resuming with pretrain.total_steps changed (4 -> 6)" in caplog.text
    assert load_checkpoint(out / "step_6.pt")["trainer"]["step"] == 6


def test_resume_with_another_batch_size_is_refused(mlm_data, tmp_path, capsys):
    out = tmp_path / "m"
    pretrain(mlm_data, out, "pretrain.total_steps=4", "pretrain.stop_after_steps=2")
    with pytest.raises(SystemExit):
        pretrain(mlm_data, out, "pretrain.total_steps=4", "pretrain.batch_size=8", "resume=true")
    assert "pretrain.batch_size: checkpoint 4, now 8" in capsys.readouterr().err


# --- checked before launch ---------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_gpus_that_are_not_there_stop_the_run_before_any_worker(tmp_path):
    proc = run_main(["hardware=8gpu", f"output_model_path={tmp_path / 'm'}"], tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert error_lines(proc) == ["error: hardware.device=cuda but no CUDA device is visible "
                                 "(torch.cuda.is_available() is false); use hardware=cpu, or hardware.device=cpu to "
                                 "keep the other settings"]
    assert "worker" not in proc.stderr


def test_inspecting_a_config_checks_the_config_but_not_the_machine(monkeypatch):
    """``--cfg job`` prints a config for a GPU machine on any machine; a wrong key is still refused."""
    checked = []
    monkeypatch.setattr("uer.cli.check_devices", checked.append)
    preflight(["hardware=8gpu"], multirun=False, machine=False)
    assert checked == []
    preflight(["hardware=8gpu"], multirun=False)
    assert len(checked) == 1 and checked[0].hardware.nproc_per_node == 8
    with pytest.raises(UerError, match="did you mean pretrain.total_steps"):
        preflight(["hardware=8gpu", "pretrain.total_step=1"], multirun=False, machine=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cfg_job_prints_a_gpu_config_on_a_machine_without_cuda(tmp_path):
    proc = run_main(["hardware=8gpu", "--cfg", "job"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "nproc_per_node: 8" in proc.stdout and "error" not in proc.stderr


def test_a_run_directory_that_cannot_be_made_is_refused_before_any_work(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("kept\n")
    assert refused(f"hydra.run.dir={afile}") == f"hydra.run.dir={afile} is a file; choose a directory for the run's " \
                                                "outputs"
    assert refused(f"hydra.sweep.dir={afile}", "seed=1,2", multirun=True).startswith(f"hydra.sweep.dir={afile} is a file")
    monkeypatch.setattr("uer.cli.os.access", lambda path, mode: False)  # as a user who may not write there (not root)
    assert refused(f"hydra.run.dir={tmp_path / 'new' / 'run'}") == (
        f"hydra.run.dir={tmp_path / 'new' / 'run'}: {tmp_path} is not a writable directory; choose another "
        "hydra.run.dir, or run from a directory you can write to")
    assert afile.read_text() == "kept\n"


def test_slurm_on_a_machine_without_srun_is_one_line(monkeypatch):
    monkeypatch.setattr("uer.cli.shutil.which", lambda name: None)
    assert refused("hardware=slurm", "seed=1", multirun=True).startswith(
        "hardware=slurm submits jobs to SLURM, but this machine has no srun on its PATH")


def test_slurm_without_multirun_says_to_add_m():
    assert refused("hardware=slurm").startswith("hardware=slurm submits jobs through Hydra's submitit launcher")


def test_device_auto_says_what_it_chose(caplog):
    from uer.runtime import resolve_device

    with caplog.at_level("INFO", logger="uer"):
        device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "hardware.device=auto:" in caplog.text


def test_the_run_directory_records_the_config_that_ran(tiny_pretrained, tmp_path):
    proc = run_main(["task=classifier", *TRAIN, *FAST, f"pretrained_model_path={tiny_pretrained}",
                     f"output_model_path={tmp_path / 'clf'}"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    ran = OmegaConf.load(tmp_path / "run" / "config.yaml")
    composed = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert ran.model.hidden_size == 32 and composed.model.hidden_size == 768
    assert json.loads(json.dumps(OmegaConf.to_container(ran)))["encoder"]["layers_num"] == 1
