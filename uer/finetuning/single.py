"""One train file, one dev file (and optionally a test file): the usual fine-tuning.

Each epoch ends with an evaluation on ``dev_path`` (and with ``finetune.eval_every_steps``,
so does every that many steps); the best evaluation's model (by ``finetune.metric``) is
kept as ``best.pt`` in the output directory, a checkpoint that describes itself (the
run's config, the tokenizer, what the task learnt), so ``stage=infer`` needs nothing
else; ``last.pt`` beside it is what ``resume=true`` continues from
(:mod:`uer.finetuning.loop`).  At the end the best model is scored on ``test_path``.  Scores go to
``results.jsonl`` in the run directory and ``run`` returns the best dev score, for Hydra
sweepers to optimise.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from uer.errors import UerError
from uer.finetuning.batches import SampledBatches
from uer.finetuning.loop import FitOutputs, fit
from uer.finetuning.results import record
from uer.finetuning.scores import evaluate, format_scores, log_report, report_fields
from uer.finetuning.setup import checkpoint_config, new_model, prepare, selection_metric
from uer.io.checkpoint import load_checkpoint
from uer.paths import model_dir
from uer.runtime import run_dir
from uer.training.fsdp import unsharded

log = logging.getLogger("uer.finetune")



def data_files(f: DictConfig) -> list:
    """The files a run of this runner learns from (``f`` is ``cfg.finetune``): a resumed run checks they did not
    change."""
    return [f.train_path, f.dev_path]

def run(cfg: DictConfig) -> float:
    f = cfg.finetune
    check_paths(f, ("train_path", "dev_path"))
    setup = prepare(cfg)
    task = setup.task
    train = task.read(f.train_path, split="train", labels_num=task.configured_labels_num,
                      skip_bad_rows=f.skip_bad_rows)
    labels_num = task.configured_labels_num or task.labels_num_from(train)
    task.info["labels_num"] = labels_num
    dev = task.read(f.dev_path, split="dev", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows)
    test = task.read(f.test_path, split="test", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows) \
        if f.test_path else None
    metric = selection_metric(cfg, setup.task)
    log.info("%s: %d train, %d dev%s examples, labels_num=%d", task.name, len(train), len(dev),
             f", {len(test)} test" if test is not None else "", labels_num)

    model = new_model(setup, labels_num)
    out_dir = model_dir(cfg)
    report_dir = run_dir(out_dir)
    batches = SampledBatches(task, train.examples, f.batch_size, cfg.seed, source=f"finetune.train_path {f.train_path}",
                             length_bucketing=f.length_bucketing, env=setup.env)
    best = fit(setup, model, batches, lambda scored: evaluate(setup, scored, dev, labels_num),
               FitOutputs(model_dir=out_dir, report_dir=report_dir), metric=metric,
               data_files=data_files(f), checkpoint_config=checkpoint_config(setup))

    if test is not None and setup.env.is_main:  # a sharded model's full weights, in an unsharded copy
        scored = unsharded(model, load_checkpoint(best.path)["model"])
        scores = evaluate(setup, scored, test, labels_num)
        log.info("test (epoch %s model, step %d): %s", best.epoch, best.step, format_scores(scores))
        log_report("test", scores)
        record(report_dir, {"split": "test", "epoch": best.epoch, "step": best.step, **scores, **report_fields(scores)})
    return float(best.score)


def check_paths(f, keys) -> None:
    """A UerError for the first of ``finetune.KEY`` that is not set."""
    for key in keys:
        if not f[key]:
            raise UerError(f"finetune.{key} is not set; e.g. finetune.{key}=datasets/test_data/book_review/"
                           f"{key.split('_')[0]}.tsv")
