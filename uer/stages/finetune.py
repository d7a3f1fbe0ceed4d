"""stage=finetune: put a task head on a backbone and train it on labelled files.

The backbone starts from one of three places:

* this project's checkpoint (``pretrained_model_path=....pt``): the config stored in it
  rebuilds the backbone, so no architecture flags are needed; its vocabulary must be
  the current tokenizer's;
* an original UER ``.bin``: the composed ``embedding``/``encoder``/``size`` describe it;
* nothing (``pretrained_model_path=null``): random initialisation from the composed config.

Each epoch ends with an evaluation on ``dev_path``; the best epoch (by ``finetune.metric``)
is kept as ``output_model_path/best.pt``, a checkpoint that describes itself (model
config, tokenizer, vocabulary identity, task config with ``labels_num``), so
``stage=infer`` needs nothing else.  At the end the best model is scored on
``test_path``.  Scores go to ``results.jsonl`` in the run directory and ``run`` returns
the best dev score, for Hydra sweepers to optimise.

The run is built from pieces that other ways of fine-tuning reuse: :func:`prepare`
(options, device, starting weights, the task), :func:`new_model`, :class:`SampledBatches`
(the batches of one file) and :func:`fit` (the epochs, dev evaluation and best-epoch
checkpoint).  A task whose fine-tuning is not "one train file, one dev file" names the
module that runs it in its class attribute ``finetune_runner`` (a module with
``run(cfg) -> float``): ``classifier_cv`` (k-fold cross-validation,
:mod:`uer.stages.cross_validation`) and ``mt_classifier`` (several datasets, one backbone,
:mod:`uer.stages.multi_task`).
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from uer import distributed, launch
from uer.data.sampler import EpochSampler
from uer.distributed import DistEnv
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint, save_checkpoint
from uer.io.uer_format import from_uer_state_dict, load_into_model, load_uer_bin
from uer.models import build_backbone
from uer.runtime import configure_threads, resolve_device, run_dir, seed_everything
from uer.stages.common import MODEL_NODES, check_vocabulary, model_config, tokenizer_from_config, training_model
from uer.tasks import Task, TaskData, get_task, predict
from uer.training.optim import build_optimizer, linear_warmup_decay
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.finetune")

BEST = "best.pt"
RESULTS = "results.jsonl"


def run(cfg: DictConfig) -> float:
    runner = getattr(get_task(cfg.task.type), "finetune_runner", None)
    if runner:
        if launch.world_size(cfg) > 1:
            raise UerError(f"task={cfg.task.type} runs in one process; drop hardware.nproc_per_node/nnodes")
        return importlib.import_module(runner).run(cfg)
    try:
        return run_single(cfg)
    finally:
        distributed.shutdown()


def run_single(cfg: DictConfig) -> float:
    """One train file, one dev file (and optionally a test file): the usual fine-tuning."""
    f = cfg.finetune
    check_paths(f, ("train_path", "dev_path"))
    setup = prepare(cfg)
    task, task_cfg = setup.task, setup.task_cfg
    train = task.read(f.train_path, split="train", labels_num=task_cfg.get("labels_num"), skip_bad_rows=f.skip_bad_rows)
    labels_num = task_cfg.get("labels_num") or task.labels_num_from(train)
    task_cfg["labels_num"] = labels_num
    dev = task.read(f.dev_path, split="dev", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows)
    test = task.read(f.test_path, split="test", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows) \
        if f.test_path else None
    metric = selection_metric(setup)
    log.info("%s: %d train, %d dev%s examples, labels_num=%d", task.name, len(train), len(dev),
             f", {len(test)} test" if test is not None else "", labels_num)

    model = new_model(setup, labels_num)
    out_dir = output_dir(cfg)
    report_dir = run_dir(out_dir)
    batches = SampledBatches(task, train.examples, f.batch_size, cfg.seed, source=f"finetune.train_path {f.train_path}",
                             length_bucketing=f.length_bucketing, env=setup.env)
    best = fit(setup, model, batches, lambda: evaluate(setup, model, dev, labels_num), metric=metric,
               best_path=out_dir / BEST, report_dir=report_dir, checkpoint_config=checkpoint_config(setup))

    if test is not None and setup.env.is_main:
        model.load_state_dict(load_checkpoint(best.path)["model"])
        scores = evaluate(setup, model, test, labels_num)
        log.info("test (epoch %d model): %s", best.epoch, format_scores(scores))
        record(report_dir, {"split": "test", "epoch": best.epoch, **scores})
    return float(best.score)


@dataclass
class Setup:
    """What every fine-tuning run starts from, once the options are checked."""

    cfg: DictConfig
    device: torch.device
    architecture: dict  # the resolved MODEL_NODES configs of the backbone
    tokenizer: object
    state: dict | None  # starting weights in our names (None: random initialisation)
    source: str | None  # where ``state`` came from, for messages
    task_cfg: dict  # the task node as a plain dict; runs fill in what they learn (labels_num)
    task: Task
    env: DistEnv = DistEnv()  # this process's rank in a multi-process run


def prepare(cfg: DictConfig) -> Setup:
    """Check the common options, set threads/device/seed, load the starting weights, make the task."""
    f = cfg.finetune
    _check_options(f)
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)
    env = distributed.init(cfg.hardware, device)
    device = distributed.worker_device(device, env)
    seed_everything(cfg.seed)

    architecture, tokenizer, state, source = starting_point(cfg)
    positions = architecture["embedding"]["max_seq_length"]
    if f.seq_length > positions:
        raise UerError(f"finetune.seq_length={f.seq_length} exceeds the {positions} positions the embedding has; "
                       f"use finetune.seq_length={positions} or less")

    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    if task_cfg.get("labels_num") is not None and task_cfg["labels_num"] < 1:
        raise UerError(f"task.labels_num={task_cfg['labels_num']} must be at least 1 (or null to count from train)")
    task = get_task(task_cfg["type"])(task_cfg, tokenizer, f.seq_length)
    return Setup(cfg, device, architecture, tokenizer, state, source, task_cfg, task, env)


def selection_metric(setup: Setup) -> str:
    """``finetune.metric`` (or the task's first metric), checked against what the task reports."""
    task = setup.task
    metric = setup.cfg.finetune.metric or task.metrics[0]
    if metric not in task.metrics:
        raise UerError(f"finetune.metric={metric} is not reported by task {task.name}; "
                       f"choose one of: {', '.join(task.metrics)}")
    return metric


def new_model(setup: Setup, labels_num: int | None) -> nn.Module:
    """The task's model on a fresh backbone, holding the starting weights, on the device."""
    backbone = build_backbone(OmegaConf.create(setup.architecture["embedding"]),
                              OmegaConf.create(setup.architecture["encoder"]), len(setup.tokenizer.vocab))
    model = setup.task.build_model(backbone, labels_num)
    if setup.state is not None:
        load_into_model(model, usable_weights(setup.state, model), source=setup.source)
    return model.to(setup.device)


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.output_model_path) if cfg.output_model_path else run_dir(Path.cwd()) / "model"


def checkpoint_config(setup: Setup, **extra) -> dict:
    """The config a fine-tuned checkpoint stores, so ``stage=infer`` can rebuild everything from it."""
    return {
        **{node: setup.architecture[node] for node in MODEL_NODES if node in setup.architecture},
        "tokenizer": OmegaConf.to_container(setup.cfg.tokenizer, resolve=True),
        "task": dict(setup.task_cfg),
        "task_info": dict(setup.task.info),
        "finetune": {"seq_length": setup.cfg.finetune.seq_length},
        **extra,
    }


class SampledBatches:
    """Collated batches of ``examples``, each epoch a fresh permutation drawn from ``seed``.

    An epoch is ``len(examples) // batch_size`` batches.  With ``length_bucketing`` the
    sampler groups rows of similar length (``task.length``) into batches, visited in
    random order (:mod:`uer.data.sampler`): a batch is padded to its longest row, so this
    cuts the padding that a few long rows otherwise add to most batches.
    """

    def __init__(self, task: Task, examples: list, batch_size: int, seed: int, *, source: str,
                 length_bucketing: bool = False, env: DistEnv = DistEnv()):
        self.task = task
        self.examples = examples
        lengths = np.array([task.length(example) for example in examples]) if length_bucketing else None
        self.sampler = EpochSampler(len(examples), batch_size, seed, source=source, lengths=lengths,
                                    rank=env.rank, world_size=env.world_size)
        self.batches_per_epoch = self.sampler.batches_per_epoch

    def next_batch(self) -> dict:
        indices, _ = self.sampler.next_indices()
        return self.task.collate([self.examples[i] for i in indices.tolist()])


@dataclass
class Best:
    """The best epoch of a :func:`fit`: its score on the selection metric, all its dev scores, the checkpoint."""

    path: Path
    score: float | None = None
    epoch: int | None = None
    scores: dict = field(default_factory=dict)


def fit(setup: Setup, model: nn.Module, batches, evaluate_dev: Callable[[], dict], *, metric: str, best_path: Path,
        report_dir: Path, checkpoint_config: dict, progress_dir: Path | None = None, name: str = "",
        record_extra: dict | None = None) -> Best:
    """Train ``finetune.epochs_num`` epochs of ``batches``; after each, ``evaluate_dev()`` and keep the best.

    ``batches`` has ``batches_per_epoch`` and ``next_batch()``.  ``evaluate_dev`` returns
    flat ``{name: float}`` scores holding ``metric``; each epoch's scores are logged and
    recorded in ``report_dir/results.jsonl`` (with ``record_extra``), and the best epoch's
    model is saved to ``best_path``.  Training progress goes to ``progress_dir`` (default
    ``report_dir``).  ``name`` prefixes the log lines (e.g. ``fold 2/5``).
    """
    cfg, f = setup.cfg, setup.cfg.finetune
    if batches.batches_per_epoch < f.accumulation_steps:
        raise UerError(f"finetune.accumulation_steps={f.accumulation_steps} exceeds the {batches.batches_per_epoch} "
                       f"batches of one epoch; lower it or finetune.batch_size")
    steps_per_epoch = batches.batches_per_epoch // f.accumulation_steps
    total_steps = steps_per_epoch * f.epochs_num
    if best_path.exists():
        log.warning("%s exists from an earlier run and will be replaced", best_path)
    optimizer = build_optimizer(model, f.learning_rate, f.weight_decay, f.adam_epsilon)
    scheduler = linear_warmup_decay(optimizer, total_steps, f.warmup)
    reporter = Reporter(progress_dir or report_dir, total_steps, enabled=setup.env.is_main,
                        reduce_device=setup.device)
    trainer = Trainer(model, optimizer, scheduler, device=setup.device, precision=cfg.hardware.precision,
                      accumulation_steps=f.accumulation_steps, max_grad_norm=f.max_grad_norm, reporter=reporter)
    trainer.model = training_model(model, cfg.hardware, setup.env, setup.device)
    best = Best(best_path)
    prefix = f"{name} " if name else ""

    def on_step_end(step: int) -> None:
        if step % steps_per_epoch:
            return
        epoch = step // steps_per_epoch
        scores = evaluate_dev()  # every rank scores the whole dev set, so all agree on the best epoch
        improved = best.score is None or scores[metric] > best.score
        if improved:
            best.score, best.epoch, best.scores = scores[metric], epoch, dict(scores)
        if not setup.env.is_main:
            return
        log.info("%sepoch %d/%d dev: %s%s", prefix, epoch, f.epochs_num, format_scores(scores),
                 " (best so far)" if improved else "")
        record(report_dir, {"split": "dev", **(record_extra or {}), "epoch": epoch, "step": step, **scores})
        reporter.scalars("dev", scores, step)
        if improved:
            save_checkpoint(best_path, model_state=model.state_dict(), config=checkpoint_config,
                            vocab=setup.tokenizer.identity(), trainer=None)

    try:
        trainer.fit(batches.next_batch, total_steps, f.report_steps, on_step_end)
    finally:
        reporter.close()
        trainer.model = None  # drop the DDP wrapper before the process group goes
        distributed.barrier()
    log.info("%sbest dev %s %.4f at epoch %d; saved %s", prefix, metric, best.score, best.epoch, best_path)
    return best


def evaluate(setup: Setup, model: nn.Module, data: TaskData, labels_num: int | None) -> dict[str, float]:
    """The task's scores of ``model`` on labelled ``data``."""
    return setup.task.evaluate(model_outputs(setup, model, data), data, labels_num)


def model_outputs(setup: Setup, model: nn.Module, data: TaskData) -> list[torch.Tensor]:
    return predict(model, setup.task, data, batch_size=setup.cfg.finetune.batch_size, device=setup.device,
                   precision=setup.cfg.hardware.precision)


def starting_point(cfg: DictConfig):
    """``(architecture, tokenizer, state dict in our names or None, source)`` of the backbone to fine-tune."""
    tokenizer = tokenizer_from_config(cfg)
    path = cfg.pretrained_model_path
    if not path:
        log.info("pretrained_model_path is null: the model starts from random weights")
        return model_config(cfg), tokenizer, None, None
    if str(path).endswith(".bin"):
        log.info("starting from UER-format %s with the composed embedding/encoder/size config", path)
        return model_config(cfg), tokenizer, from_uer_state_dict(load_uer_bin(path)), str(path)
    payload = load_checkpoint(path)
    stored = payload.get("config") or {}
    absent = [node for node in ("embedding", "encoder") if node not in stored]
    if absent:
        raise UerError(f"checkpoint {path} stores no {absent[0]} config, so its model cannot be rebuilt; "
                       "give a checkpoint written by this project's pretrain or finetune stage")
    check_vocabulary(payload.get("vocab"), stored.get("tokenizer"), tokenizer, path)
    log.info("starting from %s; its stored config rebuilds the model (composed embedding/encoder/size ignored)",
             path)
    return {node: stored[node] for node in MODEL_NODES if node in stored}, tokenizer, payload["model"], str(path)


def usable_weights(state: dict, model: torch.nn.Module) -> dict:
    """Backbone weights, plus head weights whose shapes fit (a head for another labels_num starts afresh)."""
    expected = model.state_dict()
    keep, dropped = {}, []
    for key, tensor in state.items():
        if key.startswith("backbone.") or (key in expected and expected[key].shape == tensor.shape):
            keep[key] = tensor
        elif key in expected:
            dropped.append(key)
    if dropped:
        log.warning("not loading %s: shapes differ from this task's head, which starts from random weights",
                    ", ".join(dropped))
    return keep


def check_paths(f, keys) -> None:
    """A UerError for the first of ``finetune.KEY`` that is not set."""
    for key in keys:
        if not f[key]:
            raise UerError(f"finetune.{key} is not set; e.g. finetune.{key}=datasets/test_data/book_review/"
                           f"{key.split('_')[0]}.tsv")


def _check_options(f) -> None:
    for key in ("epochs_num", "batch_size", "report_steps", "accumulation_steps"):
        if f[key] < 1:
            raise UerError(f"finetune.{key}={f[key]} must be at least 1")
    if f.learning_rate <= 0:
        raise UerError(f"finetune.learning_rate={f.learning_rate} must be positive")
    if not 0 <= f.warmup < 1:
        raise UerError(f"finetune.warmup={f.warmup} is a fraction of all steps; use a value in [0, 1)")


def record(directory: Path, entry: dict) -> None:
    """Append ``entry`` as one JSON line to ``directory/results.jsonl``."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / RESULTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def format_scores(scores: dict[str, float]) -> str:
    return " | ".join(f"{name} {value:.4f}" for name, value in scores.items())
