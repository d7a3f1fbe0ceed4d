"""``stage=finetune task=classifier_cv``: k-fold cross-validation with out-of-fold features.

    python main.py stage=finetune task=classifier_cv task.folds_num=5 \
        finetune.train_path=datasets/smp2020-ewect/virus/train.tsv \
        task.train_features_path=outputs/virus_oof.npy output_model_path=outputs/models/virus_cv

The rows of ``finetune.train_path`` are split into ``task.folds_num`` folds, stratified by
label and fixed by ``seed`` (:func:`uer.tasks.classifier_cv.assign_folds`).  Fold ``k``'s
model trains on the other folds, is evaluated on fold ``k`` (the held-out fold plays dev:
it picks the best evaluation; evaluations as in :mod:`uer.finetuning.loop`) and is kept as
``output_model_path/fold_k/best.pt``, beside the ``last.pt`` that ``resume=true`` continues
from (folds that had finished are not trained again); each fold starts from the same
pretrained weights, with ``seed + k`` for its head and batch order.  Then:

* ``task.train_features_path`` (default ``output_model_path/train_features.npy``) gets a
  float32 array of shape ``(rows, labels_num)``: row ``i`` holds the class probabilities
  of the ``i``-th usable training row (file order) from the model that did not train on
  it.  It is written once, at the end, through a temporary file and a rename.
* ``output_model_path/folds.json`` lists the fold models; ``stage=infer
  infer.load_model_path=OUTPUT_MODEL_PATH`` (the directory or that file) predicts with the
  mean of their probabilities.
* The log and ``results.jsonl`` hold every fold's dev scores at each evaluation, then one
  ``{"split": "cv", ...}`` record with the mean (and standard deviation) over folds of
  each fold's best scores (``acc``, ``macro_f1``); with ``finetune.test_path`` the
  fold ensemble is scored on it (``{"split": "test", ...}``).

``run`` returns the mean over folds of the selection metric (``finetune.metric``).
``finetune.dev_path`` is not used.
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from uer.errors import UerError, reason
from uer.finetuning import setup as finetune_setup
from uer.finetuning.batches import SampledBatches
from uer.finetuning.checkpoints import BEST
from uer.finetuning.loop import FitOutputs, fit
from uer.finetuning.results import record
from uer.finetuning.scores import Scores, evaluate, format_scores, log_report, model_outputs, report_fields
from uer.finetuning.single import check_paths
from uer.io.atomic import atomic_write
from uer.io.checkpoint import load_checkpoint
from uer.runtime import run_dir, seed_everything
from uer.paths import model_dir
from uer.tasks import TASKS, TaskData
from uer.tasks.classifier_cv import assign_folds

log = logging.getLogger("uer.finetune")

MANIFEST = "folds.json"
MANIFEST_FORMAT = "uer-cv-folds"
DEFAULT_FEATURES = "train_features.npy"


def run(cfg: DictConfig) -> float:
    f = cfg.finetune
    check_paths(f, ("train_path",))
    options = TASKS.build_config(cfg.task)
    folds_num = options.folds_num
    if folds_num < 2:
        raise UerError(f"task.folds_num={folds_num}: cross-validation needs at least 2 folds")
    out_dir = model_dir(cfg)
    features_path = Path(options.train_features_path) if options.train_features_path \
        else out_dir / DEFAULT_FEATURES
    if features_path.is_dir():
        raise UerError(f"task.train_features_path={features_path} is a directory; give a file name, "
                       f"e.g. {features_path / DEFAULT_FEATURES}")
    if f.dev_path:
        log.warning("finetune.dev_path=%s is not used by classifier_cv: each fold's held-out part plays dev",
                    f.dev_path)

    setup = finetune_setup.prepare(cfg)
    task = setup.task
    train = task.read(f.train_path, split="train", labels_num=task.configured_labels_num,
                      skip_bad_rows=f.skip_bad_rows)
    labels_num = task.configured_labels_num or task.labels_num_from(train)
    task.info["labels_num"] = labels_num
    folds = assign_folds([example.label for example in train.examples], folds_num, cfg.seed)
    largest = int(np.bincount(folds).max())
    if len(train) - largest < f.batch_size:
        raise UerError(f"finetune.batch_size={f.batch_size} exceeds the {len(train) - largest} rows a fold trains on "
                       f"({len(train)} rows of {f.train_path} in {folds_num} folds); lower finetune.batch_size "
                       f"or task.folds_num")
    test = task.read(f.test_path, split="test", labels_num=labels_num, skip_bad_rows=f.skip_bad_rows) \
        if f.test_path else None
    metric = finetune_setup.selection_metric(cfg, setup.task)
    log.info("%s: %d train rows in %d folds of %d-%d rows%s, labels_num=%d", task.name, len(train), folds_num,
             int(np.bincount(folds).min()), largest, f", {len(test)} test" if test is not None else "", labels_num)

    report_dir = run_dir(out_dir)
    manifest = out_dir / MANIFEST

    features = np.zeros((len(train), labels_num), dtype=np.float32)
    fold_scores, fold_models = [], []
    for k in range(folds_num):
        held = np.flatnonzero(folds == k)
        trained = np.flatnonzero(folds != k)
        seed_everything(cfg.seed + k)
        model = finetune_setup.new_model(setup, labels_num)
        dev = TaskData(train.path, [train.examples[i] for i in held], info=dict(train.info))
        batches = SampledBatches(task, [train.examples[i] for i in trained], f.batch_size, cfg.seed + k,
                                 source=f"fold {k} of finetune.train_path {f.train_path}",
                                 length_bucketing=f.length_bucketing)
        fold_outputs = FitOutputs(model_dir=out_dir / f"fold_{k}", report_dir=report_dir,
                                  progress_dir=report_dir / f"fold_{k}", name=f"fold {k + 1}/{folds_num}",
                                  record_extra={"fold": k})
        best = fit(setup, model, batches, lambda scored: evaluate(setup, scored, dev, labels_num), fold_outputs,
                   metric=metric, data_files=[f.train_path],
                   checkpoint_config=finetune_setup.checkpoint_config(setup, cv={"fold": k, "folds_num": folds_num}))
        model.load_state_dict(load_checkpoint(best.path)["model"])
        logits = torch.cat(model_outputs(setup, model, dev))
        features[held] = torch.softmax(logits.float(), dim=-1).numpy()
        fold_scores.append(best.scores)
        fold_models.append(f"fold_{k}/{BEST}")
        del model
        gc.collect()

    write_npy(features_path, features)
    write_manifest(manifest, fold_models, task.name, labels_num)
    summary = {}
    for name in fold_scores[0]:
        values = np.array([scores[name] for scores in fold_scores], dtype=np.float64)
        summary[name] = float(values.mean())
        summary[f"{name}_std"] = float(values.std())
    log.info("%d-fold cross-validation (best evaluation of each fold): %s", folds_num,
             format_scores({name: value for name, value in summary.items() if not name.endswith("_std")}))
    log.info("out-of-fold probabilities (%d x %d) written to %s; fold models listed in %s", *features.shape,
             features_path, manifest)
    record(report_dir, {"split": "cv", "folds_num": folds_num, "metric": metric, **summary,
                        "folds": [{"fold": k, **scores} for k, scores in enumerate(fold_scores)]})

    if test is not None:
        probs = None
        for path in fold_models:
            model = finetune_setup.new_model(setup, labels_num)
            model.load_state_dict(load_checkpoint(out_dir / path)["model"])
            fold_probs = torch.softmax(torch.cat(model_outputs(setup, model, test)).float(), dim=-1)
            probs = fold_probs if probs is None else probs + fold_probs
        outputs = [torch.log(probs / len(fold_models))]
        scores = Scores(task.evaluate(outputs, test, labels_num), task.report(outputs, test, labels_num))
        log.info("test (mean of %d fold models): %s", folds_num, format_scores(scores))
        log_report("test", scores)
        record(report_dir, {"split": "test", "folds_num": folds_num, **scores, **report_fields(scores)})
    return summary[metric]


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.save(handle, array), binary=True)


def write_manifest(path: Path, models: list[str], task: str, labels_num: int) -> None:
    text = json.dumps({"format": MANIFEST_FORMAT, "task": task, "labels_num": labels_num, "models": models},
                      indent=2) + "\n"
    atomic_write(path, lambda handle: handle.write(text))


def read_manifest(path: Path) -> list[Path]:
    """The fold checkpoints a ``folds.json`` lists (relative to its directory), each checked to exist."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UerError(f"{path}: cannot be read as the fold list of task=classifier_cv ({reason(err)}); "
                       "rerun stage=finetune task=classifier_cv to rewrite it") from None
    models = manifest.get("models") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(models, list) \
            or not models or not all(isinstance(m, str) for m in models):
        raise UerError(f"{path}: not a fold list written by task=classifier_cv (format {MANIFEST_FORMAT!r} "
                       "with a non-empty 'models' list); rerun stage=finetune task=classifier_cv to rewrite it")
    paths = [path.parent / model for model in models]
    for model_path in paths:
        if not model_path.is_file():
            raise UerError(f"{path}: lists {model_path}, which is not found; the fold models must stay next to "
                           "folds.json (rerun the cross-validation if they were removed)")
    return paths
