"""The shape of a run's config: one root schema per stage, holding exactly what the stage uses.

``conf/stage/NAME.yaml`` starts from ``schema/run/NAME`` (the stage's root dataclass) and
adds its groups, so ``stage=finetune`` has no ``pretrain:`` section, and a key that no
schema of the run declares fails at composition.  Group nodes are typed ``Any`` here
because each option brings its own schema (``schema/<group>/<name>``, registered with the
component); the shared ``model`` sizes and ``hardware`` have one schema each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from uer.config.fields import NON_NEGATIVE, setting
from uer.config.model_size import ModelSizeConfig
from uer.runtime import HardwareConfig


STAGE_NAMES = ("preprocess", "pretrain", "finetune", "infer", "score", "tool")
STAGE_HELP = f"what to run: {' | '.join(STAGE_NAMES)} (task= implies finetune, tool= implies tool)"


# Each stage's root schema, by stage name in STAGE_NAMES' order, registered by the stage modules
# (:mod:`uer.stages`); the composition root stores them in the ConfigStore and the run checks compare a
# config with them.
STAGE_ROOTS: dict[str, type] = {}


def stage_root(name: str):
    """Class decorator: the root schema of ``stage=name``."""

    def register(root: type) -> type:
        if name not in STAGE_NAMES or name in STAGE_ROOTS:
            raise ValueError(f"stage {name!r} is not one of {STAGE_NAMES} or has two root schemas")
        roots = {**STAGE_ROOTS, name: root}
        STAGE_ROOTS.clear()
        STAGE_ROOTS.update((stage, roots[stage]) for stage in STAGE_NAMES if stage in roots)
        return root

    return register


def stage_key(name: str):
    """The ``stage`` field of stage ``name``'s root schema."""
    return setting(name, STAGE_HELP)


@dataclass
class RunConfig:
    """Keys of every run."""

    stage: str = setting(MISSING, STAGE_HELP)
    seed: int = setting(7, "seed of every random draw (weights, masks, batch order, dropout)", bounds=NON_NEGATIVE)


@dataclass
class InspectsWeights:
    """Keys of the stages that load a model to use it (inference, scoring, tools)."""

    allow_nonfinite_weights: bool = setting(
        False, "load a model whose weights hold NaN or inf anyway, to inspect it (its outputs are not meaningful); "
               "false = such a model is refused, naming its first broken tensor")


@dataclass
class BackboneGroups:
    """The nodes that describe a model's input and backbone."""

    tokenizer: Any = setting(MISSING, "the tokenizer (tokenizer=)")
    model: ModelSizeConfig = field(default_factory=ModelSizeConfig, metadata={"help": "sizes (size=)"})
    embedding: Any = setting(MISSING, "the embedding (embedding=)")
    encoder: Any = setting(MISSING, "the encoder (encoder=)")


@dataclass
class TrainingRun(BackboneGroups, RunConfig):
    """Keys of the stages that train a model."""

    output_model_path: Optional[str] = setting(
        None, "where checkpoints go (pretrain: step_N.pt; finetune: best.pt and last.pt); null = model/ in the run "
              "directory")
    pretrained_model_path: Optional[str] = setting(
        None, "weights to start from: one of our .pt checkpoints or an original UER .bin; null = random "
              "initialisation.  A .pt also gives the architecture (a conflicting override is an error); tunable "
              "settings such as dropout come from this run's config")
    hardware: HardwareConfig = field(default_factory=HardwareConfig, metadata={"help": "devices (hardware=)"})
    optimizer: Any = setting(MISSING, "the optimizer (optimizer=)")
    lr_scheduler: Any = setting(MISSING, "the learning-rate schedule (lr_scheduler=)")
    resume: bool = setting(False, "continue the run in output_model_path where it stopped (pretrain: from the newest "
                                  "readable step_N.pt; finetune: from last.pt); rerun the same command with resume=true")
    resume_allow_changes: list[str] = setting(
        [], "training settings resume=true may change, e.g. [pretrain.total_steps] or [finetune.epochs_num]; any "
            "other change is refused")
    logger: Any = setting(MISSING, "where training numbers go besides the log (logger=)")
