"""stage=pretrain: train embedding + encoder + target on a preprocessed dataset."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig

from uer import distributed, launch
from uer.data.prefetch import BatchSource
from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler
from uer.errors import UerError
from uer.io.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, step_checkpoints
from uer.io.pretrained import load_pretrained_weights
from uer.models import build_model
from uer.runtime import configure_threads, resolve_device, run_dir, seed_everything
from uer.stages.common import model_config, tokenizer_from_config, training_model
from uer.training.optim import build_optimizer, linear_warmup_decay
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.pretrain")


def run(cfg: DictConfig):
    p = cfg.pretrain
    _check_steps(p)
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)
    env = distributed.init(cfg.hardware, device)
    device = distributed.worker_device(device, env)
    seed_everything(cfg.seed)

    tokenizer = tokenizer_from_config(cfg)
    dataset = PretrainDataset(p.dataset_path)
    dataset.check_compatible(cfg.target.type, tokenizer.identity())
    if dataset.meta["seq_length"] > cfg.embedding.max_seq_length:
        raise UerError(
            f"dataset {p.dataset_path} has seq_length {dataset.meta['seq_length']} but the embedding has only "
            f"{cfg.embedding.max_seq_length} positions; raise model.max_seq_length or re-run preprocess"
        )

    out_dir = Path(cfg.output_model_path) if cfg.output_model_path else run_dir(Path.cwd()) / "model"
    architecture = model_config(cfg)
    resume_payload = _resume_payload(cfg, out_dir, architecture)

    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab))
    if resume_payload is not None:
        model.load_state_dict(resume_payload["model"])
    elif cfg.pretrained_model_path:
        load_pretrained_weights(model, cfg.pretrained_model_path)
    model.to(device)
    if env.active:
        torch.manual_seed(cfg.seed + env.rank)  # same initial weights, different dropout per rank
    log.info("model: %s parameters, %s", f"{sum(x.numel() for x in model.parameters()):,}",
             {k: architecture[k].get("type") for k in ("embedding", "encoder", "target")})

    optimizer = build_optimizer(model, p.learning_rate, p.weight_decay, p.adam_epsilon)
    scheduler = linear_warmup_decay(optimizer, p.total_steps, p.warmup)
    sampler = EpochSampler(len(dataset), p.batch_size, cfg.seed, source=f"dataset {p.dataset_path}",
                           lengths=dataset.lengths() if p.length_bucketing else None,
                           rank=env.rank, world_size=env.world_size)
    reporter = Reporter(run_dir(out_dir), p.total_steps, enabled=env.is_main, reduce_device=device)
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
        state = trainer.state_dict()  # on every rank: it gathers each rank's random state
        if not env.is_main:
            return
        state["data"] = sampler.state_dict()
        path = checkpoint_path(out_dir, step)
        save_checkpoint(path, model_state=model.state_dict(), config=architecture, vocab=tokenizer.identity(),
                        trainer=state)
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


def _check_steps(p) -> None:
    for key in ("total_steps", "save_checkpoint_steps", "report_steps", "accumulation_steps", "batch_size"):
        if p[key] < 1:
            raise UerError(f"pretrain.{key}={p[key]} must be at least 1")
    if p.data_workers < 0:
        raise UerError(f"pretrain.data_workers={p.data_workers} must be 0 (build batches in the training process) "
                       "or more")
    if not 0 <= p.warmup < 1:
        raise UerError(f"pretrain.warmup={p.warmup} is a fraction of total_steps; use a value in [0, 1)")


def _resume_payload(cfg: DictConfig, out_dir: Path, architecture: dict) -> dict | None:
    existing = step_checkpoints(out_dir)
    if launch.restarted() and existing:
        log.warning("worker restarted: resuming from %s", existing[-1][1])
    elif not cfg.resume:
        if existing:
            raise UerError(
                f"output_model_path {out_dir} already holds {existing[-1][1].name} from an earlier run; "
                "pass resume=true to continue it, or choose another output_model_path"
            )
        return None
    if not existing:
        raise UerError(f"resume=true but {out_dir} has no step_N.pt checkpoint; drop resume=true to start fresh")
    payload = load_checkpoint(existing[-1][1])
    if payload.get("trainer") is None:
        raise UerError(f"checkpoint {existing[-1][1]} holds no trainer state; it cannot be resumed")
    changed = _differences(payload["config"], architecture)
    if changed:
        raise UerError(
            f"cannot resume {existing[-1][1]}: the model config changed ({'; '.join(changed[:3])}); "
            "resume with the same embedding/encoder/target/size/tokenizer settings"
        )
    return payload


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return out
