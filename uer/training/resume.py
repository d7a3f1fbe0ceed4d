"""``resume=true`` continues a run only with the settings it was started with.

The checkpoint a run resumes from (pre-training's newest ``step_N.pt``, fine-tuning's
``last.pt``) records its run's whole config and, in its trainer state, facts about the
run (the number of processes, the training data's fingerprint).  Resuming compares them
with the run being started: a different architecture is refused outright; a different
training setting of the stage (steps or epochs, batch size, accumulation, learning rate,
optimizer, schedule, seed, processes, data; fine-tuning's task and evaluation settings too)
is refused naming each key, unless the user lists the key in ``resume_allow_changes`` --
then the run goes on and says what changed.
"""

from __future__ import annotations

import logging

from uer.errors import UerError
from uer.io.checkpoint import MODEL_NODES

log = logging.getLogger("uer.resume")

# Config keys (and everything below them) whose change alters the training trajectory, per stage.
TRAINING_KEYS = {
    "pretrain": ("pretrain.total_steps", "pretrain.batch_size", "pretrain.accumulation_steps", "pretrain.learning_rate",
                 "pretrain.max_grad_norm", "pretrain.length_bucketing"),
    "finetune": ("task", "finetune.epochs_num", "finetune.max_steps", "finetune.batch_size",
                 "finetune.accumulation_steps", "finetune.learning_rate", "finetune.max_grad_norm",
                 "finetune.seq_length", "finetune.length_bucketing", "finetune.skip_bad_rows", "finetune.metric",
                 "finetune.eval_every_steps", "finetune.early_stopping_patience"),
}
COMMON_TRAINING_KEYS = ("seed", "hardware.precision", "optimizer", "lr_scheduler")
# Facts of the run recorded in the trainer state.
RUN_FACTS = {"world_size": "processes (hardware.nproc_per_node x hardware.nnodes)",
             "dataset": "the training data's content (pretrain.dataset_path; fine-tuning's train and dev files)"}


def run_facts(world_size: int, dataset: str) -> dict:
    """The :data:`RUN_FACTS` of this run: ``world_size`` processes, ``dataset`` the fingerprint of its data."""
    return {"world_size": world_size, "dataset": dataset}


def flatten(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    out = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def _under(key: str, roots) -> bool:
    return any(key == root or key.startswith(f"{root}.") for root in roots)


def check_resumable(payload: dict, config: dict, facts: dict, allowed) -> None:
    """A UerError unless the run ``config`` (with ``facts``) may continue the checkpoint ``payload``."""
    saved, now = flatten(payload.get("config") or {}), flatten(config)
    architecture = [key for key in sorted(set(saved) | set(now))
                    if _under(key, MODEL_NODES) and key in saved and saved.get(key) != now.get(key)]
    if architecture:
        shown = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, now {now.get(key)!r}" for key in architecture[:3])
        raise UerError(f"cannot resume: the model changed ({shown}); resume with the settings the checkpoint was "
                       "trained with")
    stage = config.get("stage")
    if not any(_under(key, (stage,)) for key in saved):
        log.warning("the checkpoint was written by an older uer that did not record its training settings; "
                    "they cannot be compared with this run's")
        return
    changed = [key for key in sorted(set(saved) | set(now))
               if _under(key, COMMON_TRAINING_KEYS + TRAINING_KEYS[stage]) and saved.get(key) != now.get(key)]
    changed += _changed_facts(payload, facts)
    recorded = _recorded_facts(payload)
    _refuse(changed, saved, now, recorded, facts, allowed)
    for key in changed:
        log.warning("resuming with %s changed (%s -> %s), as resume_allow_changes allows", key,
                    _value(key, saved, recorded), _value(key, now, facts))


def check_resumable_facts(payload: dict, facts: dict, allowed) -> None:
    """The :data:`RUN_FACTS` part of :func:`check_resumable`: what can be compared before the run's whole config
    is known (fine-tuning learns its number of classes from its data), e.g. before workers start."""
    _refuse(_changed_facts(payload, facts), {}, {}, _recorded_facts(payload), facts, allowed)


def _recorded_facts(payload: dict) -> dict:
    return (payload.get("trainer") or {}).get("run") or {}


def _changed_facts(payload: dict, facts: dict) -> list[str]:
    recorded = _recorded_facts(payload)
    return [name for name in RUN_FACTS if name in recorded and recorded[name] != facts.get(name)]


def _refuse(changed: list[str], saved: dict, now: dict, recorded: dict, facts: dict, allowed) -> None:
    allowed = set(allowed or ())
    refused = [key for key in changed if not _under(key, allowed)]
    if refused:
        described = [f"{key}: checkpoint {_value(key, saved, recorded)}, now {_value(key, now, facts)}"
                     for key in refused[:4]]
        raise UerError(f"cannot resume: {'; '.join(described)}; resume with the same settings, or allow the change "
                       f"with resume_allow_changes=[{','.join(refused)}]")


def _value(key: str, config: dict, facts: dict):
    if key in RUN_FACTS:
        value = facts.get(key)
        return f"{value[:12]}..." if isinstance(value, str) and len(value) > 12 else value
    return repr(config.get(key))
