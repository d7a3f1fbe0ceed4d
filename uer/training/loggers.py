"""The ``logger=`` group: where a training run's numbers go besides its log and ``metrics.jsonl``.

* ``tensorboard`` (default): event files in ``tensorboard/`` of the run directory -- training
  and dev scalars as they come, per-class report tables as text, and at the end the test
  scores and the run's **HParams** (its overrides and final metrics), so the jobs of a
  sweep line up in TensorBoard's HParams view;
* ``csv``: the same numbers as plain files in ``csv/`` (``metrics.csv``: step, name, value;
  ``hparams.csv``; ``reports.md``);
* ``mlflow``: an MLflow run in a local SQLite store (``pip install -e ".[mlflow]"``; no
  server, nothing leaves the machine);
* ``wandb``: a Weights & Biases run (``pip install -e ".[wandb]"``), offline by default: its
  files in ``wandb/`` of the run directory, uploaded later with ``wandb sync`` (or
  ``logger.mode=online``); a sweep's jobs form one W&B group.

Each logger is opened on a directory and may be opened again on it by another process
(the end-of-run summary, a worker): TensorBoard and CSV append, MLflow and W&B continue the
run whose id they left in the directory.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import math
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, OmegaConf

from uer.config.fields import setting
from uer.config.resolvers import run_name
from uer.errors import UerError
from uer.outcome import in_multirun
from uer.registry import Registry
from uer.training.tables import report_table

LOGGERS: Registry = Registry("logger", group="logger")


class RunLogger(ABC):
    """What every logger takes: numbers by step, text by step, and the run's hyper-parameters with its results."""

    @abstractmethod
    def scalars(self, prefix: str, values: dict, step: int) -> None:
        """``prefix/<name>`` for each number of ``values`` (others are skipped)."""

    @abstractmethod
    def text(self, tag: str, text: str, step: int) -> None:
        """A Markdown ``text`` (e.g. a per-class table) under ``tag``."""

    @abstractmethod
    def hparams(self, params: dict, metrics: dict) -> None:
        """The run's settings (``params``: name -> str/number/bool) beside its final ``metrics``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files."""


def numbers(values: dict) -> dict[str, float]:
    """The finite numbers of ``values`` (not bools)."""
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


@dataclass
class LoggerConfig:
    """``logger=tensorboard|csv``: files in the run directory."""

    type: str = setting(MISSING, "the logger (pick with logger=)")


class TensorBoardLogger(RunLogger):
    def __init__(self, directory: Path):
        self.directory = Path(directory) / "tensorboard"
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from uer.tensorboard import summary_writer  # lazy: TensorBoard takes seconds to import

            self._writer = summary_writer(str(self.directory))
        return self._writer

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        for key, value in numbers(values).items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)
        self.writer.flush()

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def hparams(self, params: dict, metrics: dict) -> None:
        writer = self.writer  # first: it keeps TensorFlow out of the import below (uer.tensorboard)
        from torch.utils.tensorboard.summary import hparams  # lazy: TensorBoard takes seconds to import

        # In this run's own directory (SummaryWriter.add_hparams would open a sub-run), with each
        # metric also a scalar: the HParams view reads a metric's value from the run's scalars.
        for summary in hparams(params, metrics):
            writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            writer.add_scalar(key, value)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@LOGGERS.register("tensorboard", config=LoggerConfig)
def tensorboard(cfg: LoggerConfig, directory: Path) -> RunLogger:
    return TensorBoardLogger(directory)


class CsvLogger(RunLogger):
    def __init__(self, directory: Path):
        self.directory = Path(directory) / "csv"

    def _append(self, name: str, header: list[str], rows: list[list]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        new = not path.exists()
        with open(path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if new:
                writer.writerow(header)
            writer.writerows(rows)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        self._append("metrics.csv", ["step", "name", "value"],
                     [[step, f"{prefix}/{key}", repr(value)] for key, value in numbers(values).items()])

    def text(self, tag: str, text: str, step: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "reports.md", "a", encoding="utf-8") as handle:
            handle.write(f"## {tag} (step {step})\n\n{text}\n\n")

    def hparams(self, params: dict, metrics: dict) -> None:
        self._append("hparams.csv", ["kind", "name", "value"],
                     [["param", key, value] for key, value in params.items()]
                     + [["metric", key, repr(value)] for key, value in metrics.items()])

    def close(self) -> None:
        """Every write is closed at once: nothing to do."""


@LOGGERS.register("csv", config=LoggerConfig)
def csv_files(cfg: LoggerConfig, directory: Path) -> RunLogger:
    return CsvLogger(directory)


@dataclass
class MlflowConfig:
    """``logger=mlflow``: one MLflow run per run directory, in a local store (no server)."""

    type: str = setting(MISSING, "the logger (pick with logger=)")
    tracking_uri: Optional[str] = setting(
        None, "the MLflow store; null = a SQLite file mlflow/mlflow.db in the run's directory (a sweep's jobs share "
              "one, in the sweep's directory: `mlflow ui --backend-store-uri sqlite:///DIR/mlflow/mlflow.db` shows "
              "it); a server URL works too")
    experiment_name: Optional[str] = setting(None, "the MLflow experiment; null = this run's experiment preset, "
                                                   "else its stage")
    artifact_location: Optional[str] = setting(
        None, "where a new MLflow experiment keeps its files (the report tables); null = mlflow/artifacts beside "
              "the default store")


RUN_ID_FILE = "mlflow_run_id"
STORE_DIR = "mlflow"


def default_store(directory: Path) -> Path:
    """Where ``logger=mlflow`` keeps its store by default: in the run's directory, or for a job of a sweep
    (whose directory is one of the sweep directory's) in the sweep's, so the sweep's runs sit side by side."""
    directory = Path(directory).resolve()
    return (directory.parent if in_multirun() else directory) / STORE_DIR


class MlflowLogger(RunLogger):
    """Through MLflow's client API (no global active run): safe in a process that runs several jobs."""

    def __init__(self, cfg: MlflowConfig, directory: Path, experiment: str):
        from mlflow.tracking import MlflowClient  # lazy: an optional package, slow to import

        store = default_store(directory)
        if cfg.tracking_uri is None:
            store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=cfg.tracking_uri or f"sqlite:///{store / 'mlflow.db'}")
        id_file = Path(directory) / RUN_ID_FILE
        if id_file.exists():
            self.run_id = id_file.read_text(encoding="utf-8").strip()
            return
        name = cfg.experiment_name or experiment
        found = self.client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
            name, artifact_location=Path(cfg.artifact_location or store / "artifacts").resolve().as_uri())
        run = self.client.create_run(experiment_id, run_name=Path(directory).name,
                                     tags={"uer.run_dir": str(Path(directory).resolve())})
        self.run_id = run.info.run_id
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(self.run_id + "\n", encoding="utf-8")

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        for key, value in numbers(values).items():
            self.client.log_metric(self.run_id, f"{prefix}/{key}", value, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"{tag}_step{step}.md")

    def hparams(self, params: dict, metrics: dict) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, value)

    def close(self) -> None:
        """The client writes every call through: nothing to flush."""


@LOGGERS.register("mlflow", config=MlflowConfig)
def mlflow(cfg: MlflowConfig, directory: Path) -> RunLogger:
    return MlflowLogger(cfg, directory, run_name())


@dataclass
class WandbConfig:
    """``logger=wandb``: one Weights & Biases run per run directory."""

    type: str = setting(MISSING, "the logger (pick with logger=)")
    mode: str = setting("offline", "offline (files in wandb/ of the run directory; `wandb sync DIR` uploads them) | "
                                   "online (needs `wandb login`) | disabled")
    project: Optional[str] = setting(None, "the W&B project; null = this run's experiment preset, else its stage")
    entity: Optional[str] = setting(None, "the W&B user or team; null = your default entity")
    group: Optional[str] = setting(None, "the W&B group; null = the sweep directory's name for a sweep's jobs "
                                         "(so they line up together), none for a single run")


WANDB_MODES = ("offline", "online", "disabled")
WANDB_ID_FILE = "wandb_run_id"


class WandbLogger(RunLogger):
    """A run per directory, continued (``resume="allow"``) by whoever opens the directory again; W&B's console
    capture is off (the run's own log already goes to the terminal and the log file)."""

    def __init__(self, cfg: WandbConfig, directory: Path, experiment: str):
        import wandb  # lazy: an optional package, slow to import

        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.exists() else uuid.uuid4().hex[:8]
        group = cfg.group or (directory.parent.name if in_multirun() else None)
        self.run = wandb.init(project=cfg.project or experiment, entity=cfg.entity, group=group, name=directory.name,
                              id=run_id, resume="allow", dir=str(directory), mode=cfg.mode, reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))
        if not id_file.exists():
            id_file.write_text(run_id + "\n", encoding="utf-8")

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        logged = {f"{prefix}/{key}": value for key, value in numbers(values).items()}
        if logged:
            self.run.log(logged, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        import wandb  # lazy: imported by __init__ already

        self.run.log({tag: wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def hparams(self, params: dict, metrics: dict) -> None:
        self.run.config.update(params, allow_val_change=True)
        self.run.summary.update(metrics)

    def close(self) -> None:
        self.run.finish()


@LOGGERS.register("wandb", config=WandbConfig)
def weights_and_biases(cfg: WandbConfig, directory: Path) -> RunLogger:
    return WandbLogger(cfg, directory, run_name())


def build_logger(cfg, directory: Path) -> RunLogger:
    """The logger ``cfg`` (a ``logger`` config) describes, writing for the run in ``directory``."""
    cfg = LOGGERS.build_config(cfg)
    return LOGGERS.lookup(cfg.type)(cfg, Path(directory))


def check_logger(cfg) -> None:
    """A UerError before any work when the chosen logger's package is not installed."""
    cfg = LOGGERS.build_config(cfg)
    if cfg.type == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise UerError('logger=mlflow needs MLflow: pip install -e ".[mlflow]" (or choose logger=tensorboard or csv)')
    if cfg.type == "wandb":
        if cfg.mode not in WANDB_MODES:
            raise UerError(f"logger.mode={cfg.mode} is not a W&B mode; choose one of: {', '.join(WANDB_MODES)}")
        if importlib.util.find_spec("wandb") is None:
            raise UerError('logger=wandb needs Weights & Biases: pip install -e ".[wandb]" (or choose '
                           "logger=tensorboard or csv)")


def log_run_end(cfg, facts: dict, directory: Path) -> None:
    """What a training run's logger gets at the end (:func:`uer.outcome.outcome` ``facts``): the test scores
    and their per-class table at the step of the model that scored them, and the HParams."""
    logger = build_logger(cfg.logger, directory)
    try:
        step = facts.get("step") or 0
        if facts.get("test"):
            logger.scalars("test", facts["test"], step)
        report = (facts.get("reports") or {}).get("test")
        if report:
            logger.text("test/report", report_table(report), step)
        logger.hparams(run_hparams(cfg), final_metrics(facts))
    finally:
        logger.close()


def run_hparams(cfg) -> dict:
    """The settings that tell runs apart: seed, learning rate and batch size, and every command-line override
    (its value in the config where that is a plain value, else as typed, e.g. ``optimizer=lamb``)."""
    section = cfg[cfg.stage]
    params = {"seed": cfg.seed, f"{cfg.stage}.learning_rate": section.learning_rate,
              f"{cfg.stage}.batch_size": section.batch_size}
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for text in overrides:
        key, _, typed = str(text).partition("=")
        key = key.lstrip("+~")
        value = OmegaConf.select(cfg, key, default=None)
        params[key] = value if isinstance(value, (int, float, str, bool)) else typed
    return params


def final_metrics(facts: dict) -> dict[str, float]:
    """``hparams/<part>_<name>``: the run's final numbers (best dev or the cross-validation mean, test, last
    training report) for the HParams view."""
    scored = str(facts.get("metric") or "dev").split(" ", 1)[0]
    metrics = {}
    for part, values in ((scored, facts.get("dev")), ("test", facts.get("test")), ("train", facts.get("train"))):
        metrics.update({f"hparams/{part}_{key}": value for key, value in numbers(values or {}).items()})
    return metrics
