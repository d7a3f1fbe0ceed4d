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
from uer.finetuning.checkpoints import BEST
from uer.io.checkpoint import checkpoint_path, checkpoint_tokenizer, load_checkpoint, save_checkpoint, step_checkpoints
from uer.io.formats import CHECKPOINT, read_model_file
from uer.io.outputs import DIRECTORY, Output
from uer.io.pretrained import load_pretrained_weights
from uer.models import build_model
from uer.models.compat import check_model
from uer.paths import model_dir
from uer.progress import short_path
from uer.runtime import run_dir
from uer.stages.common import model_inputs, starting_checkpoint
from uer.tokenizers import build_tokenizer
from uer.training import fsdp
from uer.training.heldout import HeldOutSet, Validation, build_dev_dataset, check_positions, open_dev_dataset
from uer.training.loggers import check_logger
from uer.training.process import run_config, training_process
from uer.training.resume import check_resumable, run_facts
from uer.training.session import TrainingSession

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
    dev_dataset_path: Optional[str] = setting(
        None, "held-out data to score during training (loss, accuracy, perplexity in the log, metrics.jsonl, the "
              "logger and results.jsonl): a corpus file, preprocessed as pretrain.dataset_path was into the run "
              "directory, or a dataset stage=preprocess wrote for the same target and tokenizer (python main.py "
              "stage=preprocess target=mlm preprocess.corpus_path=dev.txt preprocess.dataset_path=outputs/data/dev "
              "with the training's options); null = no validation")
    eval_steps: Optional[int] = setting(None, "score the held-out dataset every this many steps (and at the end); "
                                              "null = whenever a checkpoint is saved", bounds=at_least(1))
    keep_best: bool = setting(False, "write best.pt (a checkpoint like step_N.pt) whenever the held-out loss "
                                     "improves; needs dev_dataset_path")


@stage_root("pretrain")
@dataclass
class PretrainRun(TrainingRun):
    stage: str = stage_key("pretrain")
    target: Any = setting(MISSING, "the pre-training target (target=)")
    decoder: Any = setting(None, "the decoder of an encoder-decoder model (decoder=transformer, with "
                                 "target=seq2seq); null = none")
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def outputs(cfg: DictConfig) -> list[Output]:
    return [Output("output_model_path", model_dir(cfg), DIRECTORY)]


def input_keys(cfg: DictConfig) -> list[str]:
    return ["pretrain.dataset_path", "pretrained_model_path", *model_inputs(cfg)]


def prepare(cfg: DictConfig) -> None:
    """Before any worker starts: no earlier run's checkpoints in the way, the starting checkpoint's
    architecture, the combination, the dataset against the run's tokenizer, and with resume=true the
    checkpoint to continue (readable, verified, its settings and data this run's) -- every check the
    workers would otherwise make after starting."""
    check_logger(cfg.logger)
    resumed = tokenizer = None
    if cfg.resume:
        if cfg.pretrained_model_path:
            raise UerError("resume=true continues output_model_path's own checkpoint; drop pretrained_model_path")
        if distributed.starts_workers(cfg):  # in one process, run() finds and checks it (reading it once)
            resumed, _ = _newest_resumable(cfg, model_dir(cfg))
            tokenizer = _tokenizer(cfg, resumed, None)
    else:
        _refuse_earlier_checkpoints(model_dir(cfg))
        start = starting_checkpoint(cfg, BACKBONE_NODES)
        tokenizer = (checkpoint_tokenizer(start, cfg.pretrained_model_path) if start is not None
                     else build_tokenizer(cfg.tokenizer))
    check_model(cfg.embedding, cfg.encoder, cfg.target, cfg.decoder)
    dataset = None
    if tokenizer is not None:  # the run's tokenizer is known here (with resume=true in one process, run() checks)
        dataset = _open_dataset(cfg, tokenizer, check_values=False)
        _adopt_start_id(cfg, tokenizer)
    if cfg.target.type == "cls":
        _resolve_cls_labels(cfg)
    _check_validation(cfg)
    if resumed is not None:
        check_resumable(resumed, run_config(cfg), run_facts(distributed.world_size(cfg), dataset.fingerprint()),
                        cfg.resume_allow_changes)


def _adopt_start_id(cfg: DictConfig, tokenizer) -> None:
    """An encoder-decoder's targets start with the tokenizer's [CLS] unless set: recorded in the checkpoint."""
    if cfg.decoder is not None and cfg.decoder.start_id is None:
        cfg.decoder.start_id = tokenizer.vocab.role_id("cls", "the decoder's first input (decoder.start_id unset)")


def _open_dataset(cfg: DictConfig, tokenizer, check_values: bool = True) -> PretrainDataset:
    """The training dataset, refused unless built for this target and tokenizer and within the positions; also
    checked in ``prepare`` where the tokenizer is known there, so that workers never start to find it."""
    dataset = PretrainDataset(cfg.pretrain.dataset_path, check_values=check_values)
    dataset.check_compatible(cfg.target.type, tokenizer.identity())
    check_positions(dataset, "pretrain.dataset_path", cfg.embedding.get("max_seq_length"), cfg.decoder is not None)
    return dataset


def _check_validation(cfg: DictConfig) -> None:
    """The held-out dataset matches the training one (target, tokenizer, positions, classes); the options
    that need it are not set without it."""
    p = cfg.pretrain
    if p.dev_dataset_path is None:
        for key, value in (("keep_best", p.keep_best), ("eval_steps", p.eval_steps)):
            if value not in (None, False):
                raise UerError(f"pretrain.{key}={value} needs a held-out dataset: set pretrain.dev_dataset_path= "
                               f"(a dataset stage=preprocess wrote from a held-out corpus) or drop pretrain.{key}")
        return
    if Path(p.dev_dataset_path).is_file():  # a held-out corpus: workers read the dataset built from it
        p.dev_dataset_path = str(build_dev_dataset(p.dev_dataset_path, p.dataset_path, build_tokenizer(cfg.tokenizer),
                                                   run_dir(model_dir(cfg))))
    dev = open_dev_dataset(p.dev_dataset_path, p.dataset_path, cfg.target.type, cfg.embedding.get("max_seq_length"),
                           distributed.world_size(cfg), decoder=cfg.decoder is not None)
    if cfg.target.type == "cls" and dev.labels_num() > cfg.target.labels_num:
        raise UerError(f"pretrain.dev_dataset_path={p.dev_dataset_path} has labels up to {dev.labels_num() - 1} but "
                       f"target.labels_num={cfg.target.labels_num}; set target.labels_num={dev.labels_num()}")


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
    resume_payload, resume_path = _resume_payload(cfg, out_dir)
    start = None if resume_payload is not None or not cfg.pretrained_model_path else cfg.pretrained_model_path
    tokenizer = _tokenizer(cfg, resume_payload, start)
    _adopt_start_id(cfg, tokenizer)
    dataset = _open_dataset(cfg, tokenizer)
    config = run_config(cfg)
    facts = run_facts(env.world_size, dataset.fingerprint())
    if resume_payload is not None:
        check_resumable(resume_payload, config, facts, cfg.resume_allow_changes)

    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab),
                        tokens=tokenizer.vocab.tokens, decoder_cfg=cfg.decoder)
    if resume_payload is not None:
        model.load_state_dict(resume_payload["model"])
    elif start:
        load_pretrained_weights(model, start)
    model.to(device)
    if env.active:
        torch.manual_seed(cfg.seed + env.rank)  # same initial weights, different dropout per rank
    log.info("model: %s parameters, %s", f"{sum(x.numel() for x in model.parameters()):,}",
             {node: cfg[node].type for node in ("embedding", "encoder", "decoder", "target") if cfg[node] is not None})

    heldout = None
    if p.dev_dataset_path is not None:  # checked against the training dataset by prepare
        heldout = HeldOutSet(PretrainDataset(p.dev_dataset_path, check_values=False), p.batch_size, rank=env.rank,
                             world_size=env.world_size, device=device)
        log.info("held-out: %d instances of %s, scored %s and at the end", len(heldout.dataset),
                 short_path(p.dev_dataset_path),
                 f"every {p.eval_steps} steps" if p.eval_steps else "at every checkpoint")
    sampler = EpochSampler(len(dataset), p.batch_size, cfg.seed, source=f"dataset {p.dataset_path}",
                           lengths=dataset.lengths() if p.length_bucketing else None,
                           rank=env.rank, world_size=env.world_size)
    try:
        report_dir = run_dir(out_dir)
        with TrainingSession(cfg, model, p, total_steps=p.total_steps, report_dir=report_dir, env=env,
                             device=device, facts=facts) as session:
            validation = None
            if heldout is not None:
                validation = Validation(heldout, model, session.trainer.autocast, session.reporter,
                                        eval_steps=p.eval_steps, report_dir=report_dir, is_main=env.is_main)
            if resume_payload is not None:
                session.restore(resume_payload["trainer"], sampler, resume_path)
                if validation is not None:
                    validation.load_state_dict(resume_payload["trainer"].get("heldout"))
                log.info("resumed from step %d of %s", session.trainer.step, out_dir)
            end_step = p.total_steps
            if p.stop_after_steps is not None:
                end_step = min(end_step, session.trainer.step + p.stop_after_steps)
            checkpoints = StepCheckpoints(session, sampler, out_dir, end_step, p, config=config, tokenizer=tokenizer,
                                          validation=validation)
            batches = BatchSource(dataset, sampler, cfg.seed, workers=p.data_workers,
                                  pin_memory=device.type == "cuda")
            try:
                last = session.fit(batches.next_batch, end_step, [checkpoints])
            finally:
                batches.close()
    finally:
        distributed.shutdown()
    if last is None:
        log.info("nothing to do: the checkpoint in %s is already at step %d", out_dir, session.trainer.step)
        return None
    if validation is not None and validation.best is not None:
        return validation.best["loss"]  # what a sweep ranks pre-training runs by
    return sum(v for k, v in last.items() if k.endswith("_loss") and math.isfinite(v))


class StepCheckpoints:
    """The session callback of pre-training: ``step_N.pt`` every ``save_checkpoint_steps`` steps and at
    ``end_step``, keeping the newest ``keep_checkpoints`` (``p`` is ``cfg.pretrain``).  Each holds
    the session model's weights, the run's ``config``, the ``tokenizer`` and the session's resumable state.
    With a ``validation``, the held-out set is scored when it is due (before that step's checkpoint, which
    records the scores so far) and ``keep_best`` writes ``best.pt`` whenever the held-out loss improves."""

    def __init__(self, session: TrainingSession, sampler: EpochSampler, out_dir: Path, end_step: int, p, *,
                 config: dict, tokenizer, validation: Validation | None = None):
        self.session, self.sampler, self.out_dir, self.end_step = session, sampler, out_dir, end_step
        self.every, self.keep, self.keep_best = p.save_checkpoint_steps, p.keep_checkpoints, p.keep_best
        self.config, self.tokenizer = config, tokenizer
        self.validation = validation

    def __call__(self, step: int) -> None:
        saving = step % self.every == 0 or step == self.end_step
        improved = False
        if self.validation is not None and self.validation.due(step, saving, end=step == self.end_step):
            self.session.trainer.check_finite()  # a broken model is not scored
            improved = self.validation.evaluate(step)
        if saving:
            self.save(step, checkpoint_path(self.out_dir, step))
        if improved and self.keep_best:
            self.save(step, self.out_dir / BEST)

    def save(self, step: int, path: Path) -> None:
        self.session.trainer.check_finite()  # on every rank, before anything is written
        extra = {"heldout": self.validation.state_dict()} if self.validation is not None else {}
        model_state = self.session.model_state()
        state = self.session.checkpoint_state(self.sampler, path, **extra)
        if state is None:
            return
        save_checkpoint(path, model_state=model_state, config=self.config, tokenizer=self.tokenizer, trainer=state)
        log.info("saved %s", path)
        if self.keep > 0 and path.name != BEST:
            for _, old in step_checkpoints(self.out_dir)[:-self.keep]:
                old.unlink()
                fsdp.remove_shards(old)


def _tokenizer(cfg: DictConfig, resume_payload: dict | None, start: str | None):
    """The checkpoint's own tokenizer when the run continues one; else the configured one."""
    if resume_payload is not None:
        return checkpoint_tokenizer(resume_payload, cfg.output_model_path or "output_model_path")
    if start:
        kind, payload = read_model_file(start, "pretrained_model_path")
        if kind == CHECKPOINT:
            return checkpoint_tokenizer(payload, start)
    return build_tokenizer(cfg.tokenizer)


def _refuse_earlier_checkpoints(out_dir: Path) -> None:
    existing = [path for _, path in step_checkpoints(out_dir)]
    if not existing and (out_dir / BEST).is_file():
        existing = [out_dir / BEST]
    if existing:
        raise UerError(f"output_model_path {out_dir} already holds {existing[-1].name} from an earlier run; "
                       "pass resume=true to continue it, or choose another output_model_path")


def _resume_payload(cfg: DictConfig, out_dir: Path) -> tuple[dict | None, Path | None]:
    """``(payload, path)`` of the checkpoint this run continues: the newest readable step_N.pt when resuming (or
    restarted), as rank 0 finds it; ``(None, None)`` when starting afresh.  Every rank resumes from rank 0's
    choice, so all continue from one step even where a node sees other files (after a restart of several nodes,
    each in its own run directory); a rank that cannot read that file stops the run."""
    payload, path = _newest_resumable(cfg, out_dir)
    chosen = distributed.broadcast_object(None if path is None else str(path))
    if chosen is None:
        return None, None
    if chosen == str(path):
        return payload, path
    rank = distributed.current_rank_and_size()[0]
    if not Path(chosen).is_file():
        raise UerError(f"rank {rank} cannot see {chosen}, the checkpoint rank 0 resumes from (it sees "
                       f"{path or 'no checkpoint'}): put output_model_path on a filesystem every node shares")
    return load_checkpoint(chosen), Path(chosen)


def _newest_resumable(cfg: DictConfig, out_dir: Path) -> tuple[dict | None, Path | None]:
    """``(payload, path)`` of the newest readable step_N.pt in ``out_dir`` when resuming (or restarted), else
    ``(None, None)``."""
    existing = step_checkpoints(out_dir)
    if distributed.restarted() and existing:
        log.warning("worker restarted: resuming from the newest checkpoint in %s", out_dir)
    elif not cfg.resume:
        return None, None  # prepare refused a directory holding checkpoints
    if not existing:
        raise UerError(f"resume=true but {out_dir} has no step_N.pt checkpoint; drop resume=true to start fresh")
    skipped = []
    for _, path in reversed(existing):
        try:
            payload = load_checkpoint(path)
            fsdp.check_shards(path, (payload.get("trainer") or {}).get("optimizer"))
        except UerError as err:
            skipped.append(f"{path.name} ({err})")
            continue
        if payload.get("trainer") is None:
            skipped.append(f"{path.name} (it holds no trainer state)")
            continue
        if skipped:
            log.warning("resuming from %s, the newest readable checkpoint; skipped %s", path, "; ".join(skipped))
        return payload, path
    raise UerError(f"resume=true but no checkpoint in {out_dir} can be resumed: {'; '.join(skipped)}; "
                   "drop resume=true to start fresh, or restore a checkpoint")
