"""stage=score: a fine-tuned model's metrics on a labelled file, without training.

    python main.py stage=score score.load_model_path=outputs/models/clf/best.pt \
        score.test_path=datasets/test_data/book_review/test.tsv

The model loads as for ``stage=infer`` (:func:`uer.stages.infer.load_fine_tuned`: a
``best.pt`` or ``last.pt``, a fine-tuning output directory, or a cross-validation's fold
models, which score with the mean of their class probabilities).  The file is read as the
task reads a labelled test file and scored with the task's own metrics, as fine-tuning
scores its dev and test files; the scores are logged and appended to ``results.jsonl`` in
the run directory as ``{"split": "score", "path": FILE, "model": CHECKPOINT, "metric": NAME,
...scores}``.  ``run`` returns the score on ``NAME``, the model's selection metric (its
``finetune.metric``, else the task's first), so a sweep can compare checkpoints::

    python main.py -m stage=score score.load_model_path=outputs/a/best.pt,outputs/b/best.pt score.test_path=...

A ``task=mt_classifier`` model has one head per dataset: ``score.dataset`` says which
dataset (its index in the ``task.dataset_paths`` it was trained with) the file belongs to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from uer.config.fields import setting
from uer.config.run import InspectsWeights, RunConfig, stage_key, stage_root
from uer.errors import UerError
from uer.finetuning.results import record
from uer.finetuning.scores import format_scores
from uer.runtime import HardwareConfig, run_dir
from uer.stages.infer import FineTunedModelConfig, load_fine_tuned

log = logging.getLogger("uer.score")


@dataclass
class ScoreConfig(FineTunedModelConfig):
    test_path: Optional[str] = setting(None, "labelled file to score, in the format the task fine-tunes on")
    dataset: Optional[int] = setting(None, "task=mt_classifier only: the dataset the file belongs to (its index in "
                                           "the model's task.dataset_paths); that dataset's head scores it")


@stage_root("score")
@dataclass
class ScoreRun(InspectsWeights, RunConfig):
    stage: str = stage_key("score")
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


def input_keys(cfg: DictConfig) -> list[str]:
    return ["score.load_model_path", "score.test_path"]


def run(cfg: DictConfig) -> float:
    s = cfg.score
    if not s.test_path:
        raise UerError("score.test_path is not set; give a labelled file, e.g. "
                       "score.test_path=datasets/test_data/book_review/test.tsv")
    model = load_fine_tuned(cfg, "score")
    task = model.task
    labels_num = task.info.get("labels_num")
    if hasattr(task, "read_dataset"):
        index = _dataset(s.dataset, len(task.labels_nums))
        data = task.read_dataset(index, s.test_path, split="test", labels_num=task.labels_nums[index],
                                 skip_bad_rows=False)
    elif s.dataset is not None:
        raise UerError(f"score.dataset={s.dataset} picks a head of a task=mt_classifier model; this model's task "
                       f"is {task.name}: drop score.dataset")
    else:
        data = task.read(s.test_path, split="test", labels_num=labels_num, skip_bad_rows=False)
    scores = task.evaluate(model.outputs(data), data, labels_num)
    metric = (model.payload["config"].get("finetune") or {}).get("metric") or task.metrics[0]
    log.info("%s scored on %s (%d examples): %s", model.paths[0] if len(model.paths) == 1 else
             f"{len(model.paths)} fold models", s.test_path, len(data), format_scores(scores))
    where = str(model.paths[0]) if len(model.paths) == 1 else str(Path(s.load_model_path))
    record(run_dir(Path.cwd()), {"split": "score", "path": str(s.test_path), "model": where, "metric": metric,
                                 **scores})
    return float(scores[metric])


def _dataset(index: int | None, datasets: int) -> int:
    if index is None or not 0 <= index < datasets:
        given = "is not set" if index is None else f"={index} is not one of them"
        raise UerError(f"the model is a task=mt_classifier model with {datasets} datasets and score.dataset {given}; "
                       f"set score.dataset to the index (0..{datasets - 1}) of the dataset the file belongs to")
    return index
