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
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from uer.data.sampler import EpochSampler
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint, save_checkpoint
from uer.io.uer_format import from_uer_state_dict, load_into_model, load_uer_bin
from uer.models import build_backbone
from uer.runtime import configure_threads, resolve_device, run_dir, seed_everything
from uer.stages.common import MODEL_NODES, model_config, tokenizer_from_config
from uer.tasks import TaskData, get_task, predict
from uer.training.optim import build_optimizer, linear_warmup_decay
from uer.training.report import Reporter
from uer.training.trainer import Trainer

log = logging.getLogger("uer.finetune")

BEST = "best.pt"
RESULTS = "results.jsonl"


def run(cfg: DictConfig) -> float:
    f = cfg.finetune
    _check_options(f)
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)
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
    train = task.read(f.train_path, split="train", labels_num=task_cfg.get("labels_num"), skip_bad_rows=f.skip_bad_rows)
    labels_num = task_cfg.get("labels_num") or task.labels_num_from(train)
    task_cfg["labels_num"] = labels_num
    dev = task.read(f.dev_path, split="dev", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows)
    test = task.read(f.test_path, split="test", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows) \
        if f.test_path else None
    metric = f.metric or task.metrics[0]
    if metric not in task.metrics:
        raise UerError(f"finetune.metric={metric} is not reported by task {task.name}; "
                       f"choose one of: {', '.join(task.metrics)}")
    log.info("%s: %d train, %d dev%s examples, labels_num=%d", task.name, len(train), len(dev),
             f", {len(test)} test" if test is not None else "", labels_num)

    backbone = build_backbone(OmegaConf.create(architecture["embedding"]), OmegaConf.create(architecture["encoder"]),
                              len(tokenizer.vocab))
    model = task.build_model(backbone, labels_num)
    if state is not None:
        load_into_model(model, usable_weights(state, model), source=source)
    model.to(device)

    out_dir = Path(cfg.output_model_path) if cfg.output_model_path else run_dir(Path.cwd()) / "model"
    report_dir = run_dir(out_dir)
    best_path = out_dir / BEST
    if best_path.exists():
        log.warning("%s exists from an earlier run and will be replaced", best_path)
    checkpoint_config = {
        **{node: architecture[node] for node in MODEL_NODES if node in architecture},
        "tokenizer": OmegaConf.to_container(cfg.tokenizer, resolve=True),
        "task": task_cfg,
        "task_info": dict(task.info),
        "finetune": {"seq_length": f.seq_length},
    }

    sampler = EpochSampler(len(train), f.batch_size, cfg.seed, source=f"finetune.train_path {f.train_path}")
    if sampler.batches_per_epoch < f.accumulation_steps:
        raise UerError(f"finetune.accumulation_steps={f.accumulation_steps} exceeds the {sampler.batches_per_epoch} "
                       f"batches of one epoch; lower it or finetune.batch_size")
    steps_per_epoch = sampler.batches_per_epoch // f.accumulation_steps
    total_steps = steps_per_epoch * f.epochs_num
    optimizer = build_optimizer(model, f.learning_rate, f.weight_decay, f.adam_epsilon)
    scheduler = linear_warmup_decay(optimizer, total_steps, f.warmup)
    reporter = Reporter(report_dir, total_steps)
    trainer = Trainer(model, optimizer, scheduler, device=device, precision=cfg.hardware.precision,
                      accumulation_steps=f.accumulation_steps, max_grad_norm=f.max_grad_norm, reporter=reporter)
    if cfg.hardware.compile:
        trainer.model = torch.compile(model)

    def evaluate(data: TaskData) -> dict[str, float]:
        outputs = predict(model, task, data, batch_size=f.batch_size, device=device,
                          precision=cfg.hardware.precision)
        return task.evaluate(outputs, data, labels_num)

    best = {"score": None, "epoch": None}

    def next_batch() -> dict:
        indices, _ = sampler.next_indices()
        return task.collate([train.examples[i] for i in indices.tolist()])

    def on_step_end(step: int) -> None:
        if step % steps_per_epoch:
            return
        epoch = step // steps_per_epoch
        scores = evaluate(dev)
        improved = best["score"] is None or scores[metric] > best["score"]
        log.info("epoch %d/%d dev: %s%s", epoch, f.epochs_num, _format(scores), " (best so far)" if improved else "")
        _record(report_dir, {"split": "dev", "epoch": epoch, "step": step, **scores})
        if improved:
            best.update(score=scores[metric], epoch=epoch)
            save_checkpoint(best_path, model_state=model.state_dict(), config=checkpoint_config,
                            vocab=tokenizer.identity(), trainer=None)

    try:
        trainer.fit(next_batch, total_steps, f.report_steps, on_step_end)
    finally:
        reporter.close()
    log.info("best dev %s %.4f at epoch %d; saved %s", metric, best["score"], best["epoch"], best_path)

    if test is not None:
        model.load_state_dict(load_checkpoint(best_path)["model"])
        scores = evaluate(test)
        log.info("test (epoch %d model): %s", best["epoch"], _format(scores))
        _record(report_dir, {"split": "test", "epoch": best["epoch"], **scores})
    return float(best["score"])


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


def check_vocabulary(stored_identity, stored_tokenizer, tokenizer, path) -> None:
    """A UerError naming both vocabularies unless ``tokenizer`` gives the ids the checkpoint was trained with."""
    current = tokenizer.identity()
    if stored_identity == current:
        return
    stored_identity = stored_identity or {}
    keys = sorted(k for k in set(stored_identity) | set(current) if stored_identity.get(k) != current.get(k))
    stored_tokenizer = stored_tokenizer or {}
    fix = "set tokenizer.* to the checkpoint's"
    if stored_tokenizer.get("vocab_path") or stored_tokenizer.get("spm_model_path"):
        option = "spm_model_path" if stored_tokenizer.get("spm_model_path") else "vocab_path"
        fix = (f"pass tokenizer.type={stored_tokenizer.get('type')} "
               f"tokenizer.{option}={stored_tokenizer[option]}")
        if str(stored_tokenizer[option]) == str(tokenizer.vocab.path):
            fix = (f"{stored_tokenizer[option]} changed since the checkpoint was written; restore that file "
                   "or start from a checkpoint trained with the current one")
    raise UerError(
        f"checkpoint {path} was trained with vocabulary {describe_identity(stored_identity, keys)} "
        f"({describe_tokenizer(stored_tokenizer)}) but the current tokenizer is {describe_identity(current, keys)} "
        f"({describe_tokenizer(None, tokenizer)}); {fix}"
    )


def describe_identity(identity: dict, keys: list[str]) -> str:
    return "(" + ", ".join(f"{key}={str(identity.get(key))[:12]}" for key in keys or sorted(identity)) + ")"


def describe_tokenizer(stored: dict | None, tokenizer=None) -> str:
    if tokenizer is not None:
        return f"from {tokenizer.vocab.path}"
    path = (stored or {}).get("spm_model_path") or (stored or {}).get("vocab_path")
    return f"from {path}" if path else "vocabulary file unknown"


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


def _check_options(f) -> None:
    for key in ("train_path", "dev_path"):
        if not f[key]:
            raise UerError(f"finetune.{key} is not set; e.g. finetune.{key}=datasets/test_data/book_review/"
                           f"{key.split('_')[0]}.tsv")
    for key in ("epochs_num", "batch_size", "report_steps", "accumulation_steps"):
        if f[key] < 1:
            raise UerError(f"finetune.{key}={f[key]} must be at least 1")
    if f.learning_rate <= 0:
        raise UerError(f"finetune.learning_rate={f.learning_rate} must be positive")
    if not 0 <= f.warmup < 1:
        raise UerError(f"finetune.warmup={f.warmup} is a fraction of all steps; use a value in [0, 1)")


def _record(directory: Path, record: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / RESULTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _format(scores: dict[str, float]) -> str:
    return " | ".join(f"{name} {value:.4f}" for name, value in scores.items())
