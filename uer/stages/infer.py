"""stage=infer: predict with a model written by stage=finetune.

Everything about the model comes from ``infer.load_model_path``: the architecture, the
task and its ``labels_num``, the tokenizer (checked against the vocabulary identity the
model was trained with) and the fine-tuning ``seq_length`` (unless ``infer.seq_length``
is set).  The output has one row per input row, under a header row (``label``, plus
``logits`` and ``prob`` with ``infer.output_logits``/``infer.output_prob``).  Rows are
batched with rows of similar length (``infer.batch_size`` to a batch, longest first, so
batches carry little padding) and written in the input's order.  A generating task (``task=text2text``)
writes one ``generation`` per row, with the checkpoint's generation settings unless
``infer.generation.KEY=`` replaces one; a classifier reads long rows as it was fine-tuned to (cut or
sliding windows) unless ``infer.long_text`` / ``infer.stride`` / ``infer.window_pooling`` say otherwise.

``infer.load_model_path`` is a checkpoint (``best.pt``), a directory holding one, or the
output of ``task=classifier_cv``: its directory or the ``folds.json`` in it.  A
cross-validated model predicts with the mean of its fold models' class probabilities;
its ``logits`` column then holds the log of those mean probabilities (so ``prob`` is
their softmax, and ``label`` their argmax).  ``stage=score`` loads models the same way
(:func:`load_fine_tuned`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, get_type_hints

import torch
from omegaconf import DictConfig

from uer.config.fields import at_least, help_of, setting
from uer.config.run import InspectsWeights, RunConfig, stage_key, stage_root
from uer.errors import UerError
from uer.finetuning.checkpoints import BEST
from uer.finetuning.cross_validation import MANIFEST, read_manifest
from uer.io.checkpoint import checkpoint_tokenizer, load_checkpoint, load_stored_weights
from uer.io.outputs import FILE, Output
from uer.models.generation import GenerationConfig
from uer.runtime import HardwareConfig, configure_threads, resolve_device, run_dir
from uer.tasks.classifier import LONG_TEXT, WINDOW_POOLINGS
from uer.tasks import TASKS, Task, TaskData, build_task_model, import_tasks, make_task, predict

log = logging.getLogger("uer.infer")


@dataclass
class FineTunedModelConfig:
    """Keys of the stages that use a fine-tuned model: which one, and how it reads its input."""

    load_model_path: Optional[str] = setting(None, "a best.pt (or last.pt) written by stage=finetune, a directory "
                                                   "holding best.pt, or a cross-validation's output directory (or "
                                                   "its folds.json)")
    batch_size: int = setting(64, "examples per batch", bounds=at_least(1))
    seq_length: Optional[int] = setting(None, "longest input in tokens; null = the seq_length the model was "
                                              "fine-tuned with", bounds=at_least(1))
    long_text: Optional[str] = setting(None, "a row longer than seq_length: cut | sliding (windows, their logits "
                                             "pooled); null = as fine-tuned (task=classifier and the tasks built "
                                             "on it)")
    stride: Optional[int] = setting(None, "long_text=sliding: tokens from one window's start to the next; null = as "
                                          "fine-tuned", bounds=at_least(1))
    window_pooling: Optional[str] = setting(None, "long_text=sliding: a row's logits from its windows': mean | max; "
                                                  "null = as fine-tuned")


# A generating task's settings as infer may replace them (infer.generation.num_beams=4): each of task.generation's
# keys, null = the checkpoint's value.
GenerationOverrides = dataclasses.make_dataclass("GenerationOverrides", [
    (f.name, Optional[hint], setting(None, f"{help_of(f)}; null = as fine-tuned (task=text2text)"))
    for f, hint in ((f, get_type_hints(GenerationConfig)[f.name]) for f in dataclasses.fields(GenerationConfig))])


@dataclass
class InferConfig(FineTunedModelConfig):
    test_path: Optional[str] = setting(None, "file to predict (labels, if any, are ignored)")
    prediction_path: Optional[str] = setting(None, "where predictions go; null = predictions.tsv in the run "
                                                   "directory")
    output_logits: bool = setting(False, "add a logits column")
    output_prob: bool = setting(False, "add a probabilities column")
    generation: GenerationOverrides = field(default_factory=GenerationOverrides)


@stage_root("infer")
@dataclass
class InferRun(InspectsWeights, RunConfig):
    stage: str = stage_key("infer")
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    infer: InferConfig = field(default_factory=InferConfig)


def outputs(cfg: DictConfig) -> list[Output]:
    return [Output("infer.prediction_path", prediction_path(cfg.infer), FILE)]


def input_keys(cfg: DictConfig) -> list[str]:
    return ["infer.load_model_path", "infer.test_path"]


def prediction_path(i) -> Path:
    return Path(i.prediction_path) if i.prediction_path else run_dir(Path.cwd()) / "predictions.tsv"


def run(cfg: DictConfig) -> str:
    i = cfg.infer
    if not i.test_path:
        raise UerError("infer.test_path is not set; e.g. infer.test_path=datasets/test_data/book_review/"
                       "test_nolabel.tsv")
    model = load_fine_tuned(cfg, "infer")
    if (i.output_logits or i.output_prob) and not model.task.writes_scores:
        raise UerError(f"task={model.task.name} writes no logits or probabilities; drop infer.output_logits/"
                       "infer.output_prob")
    data = model.task.read(i.test_path, split="infer", labels_num=None, skip_bad_rows=False)
    outputs = model.outputs(data)
    path = prediction_path(i)
    model.task.write_predictions(path, outputs, data, output_logits=i.output_logits, output_prob=i.output_prob)
    log.info("wrote %d predictions for %s to %s", len(data), i.test_path, path)
    return str(path)


@dataclass
class FineTunedModel:
    """A fine-tuned model as it was saved: its task, and its checkpoint (or a cross-validation's fold models)."""

    paths: list[Path]
    payload: dict  # the first checkpoint's
    task: Task
    device: torch.device
    batch_size: int
    precision: str
    allow_nonfinite: bool = False  # allow_nonfinite_weights

    def outputs(self, data: TaskData) -> list[torch.Tensor]:
        """The model's outputs on ``data``; fold models give the log of their mean class probabilities."""
        def outputs_of(path, payload) -> list[torch.Tensor]:
            model = _model(payload, self.task, path).to(self.device)
            return predict(model, self.task, data, batch_size=self.batch_size, device=self.device,
                           precision=self.precision)

        outputs = outputs_of(self.paths[0], self.payload)
        if len(self.paths) == 1:
            return outputs
        probs = torch.softmax(torch.cat(outputs), dim=-1)
        for path in self.paths[1:]:
            fold = load_checkpoint(path, self.allow_nonfinite)
            _check_same_model(fold, self.payload, path, self.paths[0])
            probs += torch.softmax(torch.cat(outputs_of(path, fold)), dim=-1)
        log.info("predicting with the mean probabilities of %d fold models", len(self.paths))
        return [torch.log((probs / len(self.paths)).clamp(min=torch.finfo(probs.dtype).tiny))]


def load_fine_tuned(cfg: DictConfig, section: str) -> FineTunedModel:
    """The model ``cfg[section]`` (a :class:`FineTunedModelConfig`) names, on the run's device."""
    options = cfg[section]
    if not options.load_model_path:
        raise UerError(f"{section}.load_model_path is not set; e.g. "
                       f"{section}.load_model_path=outputs/models/clf/best.pt")
    configure_threads(cfg.hardware.num_threads)
    device = resolve_device(cfg.hardware.device)

    paths = model_paths(options.load_model_path, section)
    payload = load_checkpoint(paths[0], cfg.allow_nonfinite_weights)
    config = payload.get("config") or {}
    if "task" not in config:
        raise UerError(f"checkpoint {paths[0]} is not a fine-tuned model (it stores no task); "
                       "fine-tune it first: stage=finetune pretrained_model_path=... output_model_path=...")
    tokenizer = checkpoint_tokenizer(payload, paths[0])
    seq_length = options.seq_length or config.get("finetune", {}).get("seq_length", 128)
    positions = config["embedding"].get("max_seq_length")
    if positions is not None and seq_length > positions:
        raise UerError(f"{section}.seq_length={seq_length} exceeds the {positions} positions the model has; "
                       f"use {section}.seq_length={positions} or less")
    task = make_task(task_config(config["task"], options, section), tokenizer, seq_length,
                     info=task_info(payload))
    return FineTunedModel(paths, payload, task, device, options.batch_size, cfg.hardware.precision,
                          cfg.allow_nonfinite_weights)


LONG_TEXT_KEYS = ("long_text", "stride", "window_pooling")  # FineTunedModelConfig's, named as the task's


def task_config(stored: dict, options, section: str) -> dict:
    """The checkpoint's task config with what ``{section}`` sets (not null) in its place: the keys of
    ``{section}.generation`` in its ``generation``, and the long-text keys (``{section}.long_text``, ...)."""
    def chosen(node, keys) -> dict:
        return {key: node.get(key) for key in keys if node is not None and node.get(key) is not None}

    generation = options.get("generation")
    generating = chosen(generation, list(generation or {}))
    long_text = chosen(options, LONG_TEXT_KEYS)
    if generating and "generation" not in stored:
        raise UerError(f"{section}.generation.{next(iter(generating))} applies to tasks that generate "
                       f"(task=text2text), not task={stored.get('type')}; drop it")
    if long_text:
        import_tasks()
        fields = {f.name for f in dataclasses.fields(TASKS.config_class(stored.get("type")))}
        if "long_text" not in fields:
            raise UerError(f"{section}.{next(iter(long_text))} applies to tasks that read a long row by windows "
                           f"(task=classifier and the tasks built on it), not task={stored.get('type')}; drop it")
        for key, known in (("long_text", LONG_TEXT), ("window_pooling", WINDOW_POOLINGS)):
            if long_text.get(key, known[0]) not in known:
                raise UerError(f"{section}.{key}={long_text[key]} is not known; choose one of: {', '.join(known)}")
    updated = {**stored, **long_text}
    if generating:
        updated["generation"] = {**stored["generation"], **generating}
    return updated


def model_paths(load_model_path, section: str) -> list[Path]:
    """The checkpoint(s) ``load_model_path`` names: a file, a directory with best.pt, or fold models."""
    path = Path(load_model_path)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return read_manifest(path / MANIFEST)
        if (path / BEST).is_file():
            return [path / BEST]
        raise UerError(f"{section}.load_model_path={path} is a directory with neither {BEST} nor {MANIFEST} (written "
                       "by task=classifier_cv); give a checkpoint file or a fine-tuning output directory")
    if path.suffix == ".json" and path.is_file():
        return read_manifest(path)
    return [path]


def task_info(payload: dict) -> dict:
    """What fine-tuning learnt (version 1 checkpoints kept it in the config, labels_num in the task node)."""
    config = payload.get("config") or {}
    info = dict(payload.get("task_info") or config.get("task_info") or {})
    info.setdefault("labels_num", (config.get("task") or {}).get("labels_num"))
    return info


def _model(payload: dict, task: Task, path):
    model = build_task_model(task, payload["config"], task.info.get("labels_num"))
    load_stored_weights(model, payload["model"], path, "fine-tuning")
    return model


def _check_same_model(payload: dict, first: dict, path, first_path) -> None:
    """Fold models share the architecture, task, tokenizer and vocabulary of the first one."""
    config, reference = payload.get("config") or {}, first.get("config") or {}
    for key in ("embedding", "encoder", "task", "finetune"):
        if config.get(key) != reference.get(key):
            raise UerError(f"fold model {path} has another {key} config than {first_path}; the fold models of one "
                           "cross-validation must come from one run (rerun it)")
    if payload.get("vocab") != first.get("vocab"):
        raise UerError(f"fold model {path} was trained with another vocabulary than {first_path}; the fold models "
                       "of one cross-validation must come from one run (rerun it)")
