"""stage=finetune: put a task head on a backbone and train it on labelled files.

The stage checks its settings, adopts the architecture of the checkpoint it starts from
(before any worker starts) and hands the run to the runner the task names in
``finetune_runner``, looked up in the registry :data:`uer.finetuning.runners.RUNNERS`: one
train/dev file (``single``, the default), ``cross_validation`` or ``multi_task``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig

from uer import distributed
from uer.config.fields import NON_NEGATIVE, POSITIVE, at_least, setting
from uer.config.run import TrainingRun, stage_key, stage_root
from uer.errors import UerError
from uer.finetuning import single
from uer.finetuning.checkpoints import LAST, check_output_dir, files_fingerprint
from uer.finetuning.loop import resumable_checkpoint
from uer.finetuning.runners import MULTI_PROCESS, RUNNERS
from uer.finetuning.setup import run_task, starting_tokenizer
from uer.io.outputs import DIRECTORY, FILE, Output, path_keys
from uer.models.compat import check_model, first_pooling_warning
from uer.paths import model_dir
from uer.reference_results import PublishedResult, check_published
from uer.stages.common import model_inputs, starting_checkpoint
from uer.tasks import get_task
from uer.training import fsdp
from uer.training.loggers import check_logger
from uer.training.resume import check_resumable_facts, run_facts

log = logging.getLogger("uer.finetune")

# What a checkpoint fine-tuning starts from decides: the backbone and its input ids (and an encoder-decoder's
# decoder and output layer, for a task that uses them).
BACKBONE_NODES = ("model", "tokenizer", "embedding", "encoder", "decoder", "target")


@dataclass
class FinetuneConfig:
    train_path: Optional[str] = setting(None, "labelled training file (format: see the task)")
    dev_path: Optional[str] = setting(None, "labelled file scored at every evaluation (after every epoch, every "
                                            "eval_every_steps and at the end); the best model is kept as best.pt")
    test_path: Optional[str] = setting(None, "labelled file scored once, with the best model, at the end")
    epochs_num: int = setting(3, "passes over train_path (max_steps, when set, decides instead)", bounds=at_least(1))
    max_steps: Optional[int] = setting(None, "stop after this many optimizer steps, whatever epochs_num says; the "
                                             "schedule then spans these steps; null = epochs_num epochs",
                                       bounds=at_least(1))
    eval_every_steps: Optional[int] = setting(None, "also score dev_path every this many steps, inside epochs; "
                                                    "null = after each epoch (and at the last step) only",
                                              bounds=at_least(1))
    early_stopping_patience: Optional[int] = setting(
        None, "stop when this many evaluations in a row have not improved the best dev score; null = never",
        bounds=at_least(1))
    batch_size: int = setting(64, "examples per micro-batch", bounds=at_least(1))
    learning_rate: float = setting(2e-5, "peak learning rate", bounds=POSITIVE)
    max_grad_norm: float = setting(1.0, "clip the gradient norm to this; 0 = no clipping", bounds=NON_NEGATIVE)
    accumulation_steps: int = setting(1, "micro-batches per optimizer step", bounds=at_least(1))
    seq_length: int = setting(128, "longest input in tokens (longer ones are cut)", bounds=at_least(1))
    report_steps: int = setting(100, "log, metrics.jsonl and TensorBoard every this many steps", bounds=at_least(1))
    metric: Optional[str] = setting(None, "the dev metric that picks the best epoch and that the run returns "
                                          "(for sweepers); null = the task's first metric")
    skip_bad_rows: bool = setting(False, "skip malformed rows (and count them) instead of failing")
    length_bucketing: bool = setting(True, "batch rows of similar length together (less padding)")


@stage_root("finetune")
@dataclass
class FinetuneRun(TrainingRun):
    stage: str = stage_key("finetune")
    task: Any = setting(MISSING, "the task (task=)")
    decoder: Any = setting(None, "the decoder of an encoder-decoder model (task=text2text brings "
                                 "decoder=transformer); null = none")
    target: Any = setting(None, "the output layer of an encoder-decoder model (task=text2text brings "
                                "target=seq2seq); null = none (the task's head)")
    published: list[PublishedResult] = setting(
        [], "published results this run reproduces ({metric, value, source, split}); the summary line and sweep "
            "tables print ours beside them (uer/reference_results.py)")
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def outputs(cfg: DictConfig) -> list[Output]:
    found = [Output("output_model_path", model_dir(cfg), DIRECTORY)]
    features = cfg.task.get("train_features_path")
    if features:
        found.append(Output("task.train_features_path", Path(features), FILE))
    return found


def input_keys(cfg: DictConfig) -> list[str]:
    return ["pretrained_model_path", *path_keys(cfg, "finetune"),
            *path_keys(cfg, "task", skip=tuple(output.key for output in outputs(cfg))), *model_inputs(cfg)]


def prepare(cfg: DictConfig) -> None:
    """Before any worker starts: no earlier run's model in the way (unless resuming), settings, the
    starting checkpoint's architecture."""
    check_output_dir(model_dir(cfg), cfg.resume)
    check_logger(cfg.logger)
    check_published(cfg.published, get_task(cfg.task.type).metrics, cfg.task.type)
    runner = get_task(cfg.task.type).finetune_runner
    RUNNERS.lookup(runner)  # a task naming no registered runner fails before any worker starts
    if distributed.world_size(cfg) > 1 and runner not in MULTI_PROCESS:
        sharding = " and hardware.strategy=fsdp (one process shards nothing)" \
            if cfg.hardware.strategy == "fsdp" else ""
        raise UerError(f"task={cfg.task.type} runs in one process; drop hardware.nproc_per_node/nnodes{sharding}")
    if cfg.resume and distributed.starts_workers(cfg):  # in one process, the run checks it as it loads it
        _check_resumable_data(cfg)
    check_decoder_use(cfg)
    start = starting_checkpoint(cfg, BACKBONE_NODES)
    check_model(cfg.embedding, cfg.encoder, cfg.get("target"), cfg.get("decoder"))
    run_task(cfg, starting_tokenizer(cfg, start))  # the vocabulary and what the task needs of it
    warning = first_pooling_warning(cfg.encoder, cfg.task.get("pooling"))
    if warning:
        log.warning("%s", warning)


def _check_resumable_data(cfg: DictConfig) -> None:
    """Before workers start: the last.pt to continue verifies (its optimizer shards too), holds fine-tuning state
    and was trained with this run's processes, data files (the single runner's: the one that runs in several
    processes) and strategy."""
    last = model_dir(cfg) / LAST
    if not last.is_file():
        return  # a run stopped before its first last.pt starts again (check_output_dir says so)
    facts = run_facts(distributed.world_size(cfg), files_fingerprint(single.data_files(cfg.finetune)))
    payload = resumable_checkpoint(last)
    check_resumable_facts(payload, facts, cfg.resume_allow_changes)
    fsdp.check_resumed_strategy(last, payload["trainer"]["optimizer"], cfg.hardware.strategy == "fsdp")


def check_decoder_use(cfg: DictConfig) -> None:
    """A decoder comes with the tasks that generate (with target=seq2seq), and only with them."""
    task = get_task(cfg.task.type)
    decoder, target = cfg.get("decoder"), cfg.get("target")
    if task.needs_decoder and (decoder is None or target is None or target.type != "seq2seq"):
        raise UerError(f"task={cfg.task.type} needs an encoder-decoder: keep the decoder=transformer and "
                       "target=seq2seq it brings (drop decoder=null/target= overrides)")
    if not task.needs_decoder and (decoder is not None or target is not None):
        what = f"decoder={decoder.type}" if decoder is not None else f"target={target.type}"
        raise UerError(f"task={cfg.task.type} puts its own head on the encoder and uses no {what}; drop it "
                       "(task=text2text fine-tunes an encoder-decoder)")


def run(cfg: DictConfig) -> float:
    try:
        return RUNNERS.lookup(get_task(cfg.task.type).finetune_runner)(cfg)
    finally:
        distributed.shutdown()

