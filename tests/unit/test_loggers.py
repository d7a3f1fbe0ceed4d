"""logger=: CSV files, an MLflow run (offline, a local SQLite store) and a W&B run (offline), each reopened on its
run directory as the end of a run does; a missing package is one line before any work."""

import csv
import importlib.util
import sys

import pytest

from test_schemas import fields, reads  # noqa: F401  (reads: the fixture recording the schema keys read)
from uer.errors import UerError
from uer.training import loggers as loggers_module
from uer.training.loggers import MlflowConfig, build_logger, check_logger
from uer_testing import compose_config


def exercise(logger, report="| class | f1 |"):
    logger.scalars("train", {"cls_loss": 0.7, "lr": 1e-4, "skipped": "text", "flag": True}, 1)
    logger.scalars("dev", {"acc": 0.5}, 2)
    logger.text("dev/report", report, 2)
    logger.hparams({"seed": 3, "finetune.learning_rate": 1e-4, "optimizer": "lamb"}, {"hparams/dev_acc": 0.5})
    logger.close()


def test_csv_logger_writes_long_metrics_hparams_and_reports(tmp_path):
    cfg = compose_config(["logger=csv"])
    exercise(build_logger(cfg.logger, tmp_path))
    again = build_logger(cfg.logger, tmp_path)  # the end of the run opens it once more: rows are appended
    again.scalars("test", {"acc": 0.25}, 2)
    again.close()
    with open(tmp_path / "csv" / "metrics.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["name"], float(r["value"])) for r in rows] == [
        ("1", "train/cls_loss", 0.7), ("1", "train/lr", 1e-4), ("2", "dev/acc", 0.5), ("2", "test/acc", 0.25)]
    with open(tmp_path / "csv" / "hparams.csv", encoding="utf-8", newline="") as handle:
        hparams = [(r["kind"], r["name"], r["value"]) for r in csv.DictReader(handle)]
    assert hparams == [("param", "seed", "3"), ("param", "finetune.learning_rate", "0.0001"),
                       ("param", "optimizer", "lamb"), ("metric", "hparams/dev_acc", "0.5")]
    assert (tmp_path / "csv" / "reports.md").read_text(encoding="utf-8") == "## dev/report (step 2)\n\n| class | f1 |\n\n"
    assert not (tmp_path / "tensorboard").exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason='pip install -e ".[mlflow]"')
def test_mlflow_logger_keeps_one_run_per_directory_in_a_local_store(tmp_path, reads):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(["logger=mlflow", f"logger.tracking_uri={store}", "logger.experiment_name=douban",
                          f"logger.artifact_location={tmp_path / 'artifacts'}"])
    run_dir = tmp_path / "run"
    exercise(build_logger(cfg.logger, run_dir), report="| 0 | 0.5 |")
    assert reads["logger"] == fields(MlflowConfig)  # its schema holds exactly the keys it reads
    again = build_logger(cfg.logger, run_dir)  # another process, the same run
    again.scalars("test", {"acc": 0.25}, 2)
    again.close()
    client = MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "douban"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == (run_dir / "mlflow_run_id").read_text(encoding="utf-8").strip()
    assert run.data.metrics == {"train/cls_loss": 0.7, "train/lr": 1e-4, "dev/acc": 0.5, "test/acc": 0.25,
                                "hparams/dev_acc": 0.5}
    assert run.data.params == {"seed": "3", "finetune.learning_rate": "0.0001", "optimizer": "lamb"}
    assert run.data.tags["uer.run_dir"] == str(run_dir.resolve())
    local = client.download_artifacts(run.info.run_id, "dev/report_step2.md", str(tmp_path / "got"))
    assert open(local, encoding="utf-8").read() == "| 0 | 0.5 |"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "dev/acc")] == [2]


def test_logger_without_its_package_stops_before_any_work(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UerError, match=r'logger=mlflow needs MLflow: pip install -e "\.\[mlflow\]"'):
        check_logger(compose_config(["logger=mlflow"]).logger)
    check_logger(compose_config(["logger=csv"]).logger)


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason='pip install -e ".[mlflow]"')
def test_mlflow_store_defaults_to_the_run_directory_not_the_working_directory(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_dir = tmp_path / "runs" / "2026-12-07" / "10-00-00"
    logger = build_logger(compose_config(["logger=mlflow", "logger.experiment_name=douban"]).logger, run_dir)
    logger.scalars("train", {"loss": 0.5}, 1)
    logger.close()
    assert list(elsewhere.iterdir()) == []  # nothing under the working directory (it was ./outputs/mlflow)
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "douban"]
    assert experiment.artifact_location == (run_dir / "mlflow" / "artifacts").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics == {"train/loss": 0.5}
    # a job of a sweep keeps its store in the sweep's directory, beside its sibling jobs
    monkeypatch.setattr(loggers_module, "in_multirun", lambda: True)
    assert loggers_module.default_store(tmp_path / "sweep" / "0") == (tmp_path / "sweep" / "mlflow").resolve()


class FakeWandb:
    """Stands in for the ``wandb`` module: records what the logger hands W&B (its offline files are W&B's own
    binary format, with no public reader)."""

    class Settings(dict):
        def __init__(self, **kwargs):
            super().__init__(kwargs)

    class Html(str):
        pass

    def __init__(self):
        self.inits, self.runs = [], []

    def init(self, **kwargs):
        self.inits.append(kwargs)
        run = type("Run", (), {})()
        run.logged, run.config_values, run.summary_values, run.finished = [], {}, {}, False
        run.log = lambda values, step: run.logged.append((step, values))
        run.config = type("Config", (), {"update": lambda _, values, allow_val_change: run.config_values.update(values)})()
        run.summary = type("Summary", (), {"update": lambda _, values: run.summary_values.update(values)})()
        run.finish = lambda: setattr(run, "finished", True)
        self.runs.append(run)
        return run


def test_wandb_logger_keeps_one_offline_run_per_directory(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = compose_config(["logger=wandb", "logger.project=douban"])
    run_dir = tmp_path / "run"
    exercise(build_logger(cfg.logger, run_dir), report="| 0 | 0.5 |")
    build_logger(cfg.logger, run_dir).close()  # the end of the run opens the directory again
    first, again = fake.inits
    assert first["id"] == again["id"] == (run_dir / "wandb_run_id").read_text().strip()
    assert first["resume"] == "allow" and first["mode"] == "offline" and first["project"] == "douban"
    assert first["dir"] == str(run_dir.resolve()) and first["group"] is None
    assert first["settings"]["console"] == "off"  # W&B does not take over the terminal
    run = fake.runs[0]
    assert run.logged[:2] == [(1, {"train/cls_loss": 0.7, "train/lr": 1e-4}), (2, {"dev/acc": 0.5})]
    assert run.logged[2][0] == 2 and "| 0 | 0.5 |" in run.logged[2][1]["dev/report"]
    assert run.config_values == {"seed": 3, "finetune.learning_rate": 1e-4, "optimizer": "lamb"}
    assert run.summary_values == {"hparams/dev_acc": 0.5}
    assert all(r.finished for r in fake.runs)
    # a job of a sweep joins the sweep's group
    monkeypatch.setattr(loggers_module, "in_multirun", lambda: True)
    build_logger(cfg.logger, tmp_path / "sweep" / "3").close()
    assert fake.inits[-1]["group"] == "sweep"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason='pip install -e ".[wandb]"')
def test_wandb_offline_run_writes_only_inside_the_run_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    logger = build_logger(compose_config(["logger=wandb", "logger.project=douban"]).logger, run_dir)
    logger.scalars("train", {"loss": 0.5}, 1)
    logger.close()
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    assert list(elsewhere.iterdir()) == []
    assert [p.name for p in (run_dir / "wandb").glob("offline-run-*/run-*.wandb")] == [f"run-{run_id}.wandb"]


def test_wandb_mode_and_package_are_checked_before_any_work(monkeypatch):
    with pytest.raises(UerError, match=r"logger.mode=cloud is not a W&B mode; choose one of: offline, online"):
        check_logger(compose_config(["logger=wandb", "logger.mode=cloud"]).logger)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UerError, match=r'logger=wandb needs Weights & Biases: pip install -e "\.\[wandb\]"'):
        check_logger(compose_config(["logger=wandb"]).logger)
