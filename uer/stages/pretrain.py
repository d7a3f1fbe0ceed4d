"""stage=pretrain: train embedding + encoder + target on a preprocessed dataset."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import MISSING, DictConfig

from uer import distributed
from uer.config.fields import NON_NEGATIVE, POSITIVE, at_least, setting
from uer.config.run import TrainingRun, stage_key, stage_root
from uer.data.prefetch import BatchSource
from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.errors import UerError
from uer.io.checkpoint import checkpoint_path, checkpoint_tokenizer, load_checkpoint, save_checkpoint, step_checkpoints
from uer.io.outputs import DIRECTORY, Output
from uer.io.pretrained import load_pretrained_weights
from uer.models import build_model
from uer.models.compat import check_model
from uer.paths import model_dir
from uer.runtime import run_dir
from uer.stages.common import run_config, starting_checkpoint, training_model, training_process
from uer.stages.resume import check_resumable
from uer.tokenizers import build_tokenizer
from uer.training.loggers import check_logger
from uer.training.optim import build_optimizer, build_scheduler
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.pretrain")

# The backbone of a checkpoint pre-training starts from; the target is this run's choice.
BACKBONE_NODES = ("model", "tokenizer", "embedding", "encoder")


@dataclass
class PretrainConfig:
    dataset_path: str = setting("outputs/data/dataset", "a dataset written by stage=preprocess")
    total_steps: int = setting(100000, "optimizer steps of the whole schedule", bounds=at_least(1))
    save_checkpoint_steps: int = setting(10000, "write step_N.pt every this many steps (and at the end)",
                                         bounds=at_least(1))
    report_steps: int = setting(100, "log, metrics.jsonl and TensorBoard every this many steps", bounds=at_least(1))
    accumulation_steps: int = setting(1, "micro-batches per optimizer step", bounds=at_least(1))
    batch_size: int = setting(32, "instances per micro-batch (per worker in a multi-process run)", bounds=at_least(1))
    learning_rate: float = setting(1e-4, "peak learning rate", bounds=POSITIVE)
    max_grad_norm: float = setting(1.0, "clip the gradient norm to this; 0 = no clipping", bounds=NON_NEGATIVE)
    stop_after_steps: Optional[int] = setting(
        None, "end this run after this many optimizer steps, leaving a checkpoint to resume from (clusters with "
              "per-job time limits); null = run to total_steps", bounds=at_least(1))
    keep_checkpoints: int = setting(0, "keep only the newest N step checkpoints; 0 = keep all", bounds=NON_NEGATIVE)
    length_bucketing: bool = setting(True, "batch instances of similar length together (less padding)")
    data_workers: int = setting(0, "processes that build batches ahead while the model trains "
                                   "(uer/data/prefetch.py); 0 = between steps in the training process, right on "
                                   "a CPU; on a GPU 1-2 keep it from waiting (bench/data_pipeline.py)",
                                bounds=NON_NEGATIVE)


@stage_root("pretrain")
@dataclass
class PretrainRun(TrainingRun):
    stage: str = stage_key("pretrain")
    target: Any = setting(MISSING, "the pre-training target (target=)")
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def outputs(cfg: DictConfig) -> list[Output]:
    return [Output("output_model_path", model_dir(cfg), DIRECTORY)]


def prepare(cfg: DictConfig) -> None:
    """Before any worker starts: no earlier run's checkpoints in the way, the starting checkpoint's
    architecture, the combination."""
    check_logger(cfg.logger)
    if cfg.resume:
        if cfg.pretrained_model_path:
            raise UerError("resume=true continues output_model_path's own checkpoint; drop pretrained_model_path")
    else:
        _refuse_earlier_checkpoints(model_dir(cfg))
        starting_checkpoint(cfg, BACKBONE_NODES)
    check_model(cfg.embedding, cfg.encoder, cfg.target)
    if cfg.target.type == "cls":
        _resolve_cls_labels(cfg)


def _resolve_cls_labels(cfg: DictConfig) -> None:
    """``target.labels_num`` of target cls: null means the dataset's number of classes; a set one must cover it."""
    dataset = PretrainDataset(cfg.pretrain.dataset_path)
    if dataset.target != "cls":
        return  # the run refuses a dataset of another target, naming both
    found = dataset.labels_num()
    wanted = cfg.target.labels_num
    if wanted is None:
        cfg.target.labels_num = found
        log.info("target.labels_num=%d (labels 0..%d in %s)", found, found - 1, cfg.pretrain.dataset_path)
    elif wanted < found:
        raise UerError(f"target.labels_num={wanted} but dataset {cfg.pretrain.dataset_path} has labels up to "
                       f"{found - 1}; set target.labels_num={found} or null (counted from the dataset)")


def run(cfg: DictConfig):
    p = cfg.pretrain
    device, env = training_process(cfg)

    out_dir = model_dir(cfg)
    resume_payload = _resume_payload(cfg, out_dir)
    start = None if resume_payload is not None or not cfg.pretrained_model_path else cfg.pretrained_model_path
    tokenizer = _tokenizer(cfg, resume_payload, start)
    dataset = PretrainDataset(p.dataset_path)
    dataset.check_compatible(cfg.target.type, tokenizer.identity())
    positions = cfg.embedding.get("max_seq_length")
    if positions is not None and dataset.meta["seq_length"] > positions:
        raise UerError(
            f"dataset {p.dataset_path} has seq_length {dataset.meta['seq_length']} but the embedding has only "
            f"{positions} positions; raise model.max_seq_length or re-run preprocess"
        )
    config = run_config(cfg)
    facts = {"world_size": env.world_size, "dataset": dataset.fingerprint()}
    if resume_payload is not None:
        check_resumable(resume_payload, config, facts, cfg.resume_allow_changes)

    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab),
                        tokens=tokenizer.vocab.tokens)
    if resume_payload is not None:
        model.load_state_dict(resume_payload["model"])
    elif start:
        load_pretrained_weights(model, start)
    model.to(device)
    if env.active:
        torch.manual_seed(cfg.seed + env.rank)  # same initial weights, different dropout per rank
    log.info("model: %s parameters, %s", f"{sum(x.numel() for x in model.parameters()):,}",
             {node: cfg[node].type for node in ("embedding", "encoder", "target")})

    optimizer = build_optimizer(cfg.optimizer, model, p.learning_rate)
    scheduler = build_scheduler(cfg.lr_scheduler, optimizer, p.total_steps)
    sampler = EpochSampler(len(dataset), p.batch_size, cfg.seed, source=f"dataset {p.dataset_path}",
                           lengths=dataset.lengths() if p.length_bucketing else None,
                           rank=env.rank, world_size=env.world_size)
    reporter = Reporter(run_dir(out_dir), p.total_steps, enabled=env.is_main, logger=cfg.logger,
                        reduce_device=device)
    trainer = Trainer(model, optimizer, scheduler, device=device, precision=cfg.hardware.precision,
                      accumulation_steps=p.accumulation_steps, max_grad_norm=p.max_grad_norm, reporter=reporter)
    if resume_payload is not None:
        trainer.load_state_dict(resume_payload["trainer"])
        sampler.load_state_dict(resume_payload["trainer"]["data"])
        log.info("resumed from step %d of %s", trainer.step, out_dir)
    trainer.model = training_model(model, cfg.hardware, env, device)

    end_step = p.total_steps
    if p.stop_after_steps is not None:
        end_step = min(end_step, trainer.step + p.stop_after_steps)

    def save(step: int) -> None:
        trainer.check_finite()  # on every rank, before anything is written
        state = trainer.state_dict()  # on every rank: it gathers each rank's random state
        if not env.is_main:
            return
        state["data"] = sampler.state_dict()
        state["run"] = facts
        path = checkpoint_path(out_dir, step)
        save_checkpoint(path, model_state=model.state_dict(), config=config, tokenizer=tokenizer, trainer=state)
        log.info("saved %s", path)
        if p.keep_checkpoints > 0:
            for _, old in step_checkpoints(out_dir)[:-p.keep_checkpoints]:
                old.unlink()

    def on_step_end(step: int) -> None:
        if step % p.save_checkpoint_steps == 0 or step == end_step:
            save(step)

    batches = BatchSource(dataset, sampler, cfg.seed, workers=p.data_workers, pin_memory=device.type == "cuda")
    try:
        last = trainer.fit(batches.next_batch, end_step, p.report_steps, on_step_end)
    finally:
        batches.close()
        reporter.close()
        # Drop the DDP wrapper before leaving the process group: a live one can abort gloo at exit.
        trainer.model = None
        distributed.barrier()
        distributed.shutdown()
    if last is None:
        log.info("nothing to do: the checkpoint in %s is already at step %d", out_dir, trainer.step)
        return None
    return sum(v for k, v in last.items() if k.endswith("_loss") and math.isfinite(v))


def _tokenizer(cfg: DictConfig, resume_payload: dict | None, start: str | None):
    """The checkpoint's own tokenizer when the run continues one; else the configured one."""
    if resume_payload is not None:
        return checkpoint_tokenizer(resume_payload, cfg.output_model_path or "output_model_path")
    if start:
        from uer.io.formats import CHECKPOINT, read_model_file

        kind, payload = read_model_file(start)
        if kind == CHECKPOINT:
            return checkpoint_tokenizer(payload, start)
    return build_tokenizer(cfg.tokenizer)


def _refuse_earlier_checkpoints(out_dir: Path) -> None:
    existing = step_checkpoints(out_dir)
    if existing:
        raise UerError(f"output_model_path {out_dir} already holds {existing[-1][1].name} from an earlier run; "
                       "pass resume=true to continue it, or choose another output_model_path")


def _resume_payload(cfg: DictConfig, out_dir: Path) -> dict | None:
    """The checkpoint this run continues: the newest readable step_N.pt when resuming (or restarted)."""
    existing = step_checkpoints(out_dir)
    if distributed.restarted() and existing:
        log.warning("worker restarted: resuming from the newest checkpoint in %s", out_dir)
    elif not cfg.resume:
        return None  # prepare refused a directory holding checkpoints
    if not existing:
        raise UerError(f"resume=true but {out_dir} has no step_N.pt checkpoint; drop resume=true to start fresh")
    skipped = []
    for _, path in reversed(existing):
        try:
            payload = load_checkpoint(path)
        except UerError as err:
            skipped.append(f"{path.name} ({err})")
            continue
        if payload.get("trainer") is None:
            skipped.append(f"{path.name} (it holds no trainer state)")
            continue
        if skipped:
            log.warning("resuming from %s, the newest readable checkpoint; skipped %s", path, "; ".join(skipped))
        return payload
    raise UerError(f"resume=true but no checkpoint in {out_dir} can be resumed: {'; '.join(skipped)}; "
                   "drop resume=true to start fresh, or restore a checkpoint")
