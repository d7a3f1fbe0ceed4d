"""Loading a reproduction script of ``experiments/`` as its command would run it (its folder on the path
while it imports), without leaving its folder's modules (each folder has its own ``common``) behind; and the
check that a BERT reproduction's preset holds its transformers side's model and recipe."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import yaml

from uer_testing import ROOT

EXPERIMENTS = ROOT / "experiments"


def load_script(folder: str, name: str) -> ModuleType:
    """``experiments/FOLDER/NAME.py`` as a module named ``FOLDER_NAME``."""
    where = EXPERIMENTS / folder
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", where / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Another folder's module of the same name (bench/common.py, imported by the bench tests as ``common``)
    # would answer the script's ``from common import ...``: set aside while it imports, put back after.
    shadowed = {path.stem: sys.modules.pop(path.stem) for path in where.glob("*.py") if path.stem in sys.modules}
    sys.path.insert(0, str(where))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(where))
        for loaded in [key for key, value in sys.modules.items()
                       if str(getattr(value, "__file__", "") or "").startswith(f"{where}/")]:
            del sys.modules[loaded]
        sys.modules.update(shadowed)
    return module


def preset_of_the_recipe(common) -> dict:
    """The preset ``conf/experiment/{common.PRESET}.yaml`` of a BERT reproduction, checked to hold the model
    (``common.MODEL``), recipe (``common.RECIPE``) and best-epoch metric (``common.BEST_METRIC``) its transformers
    side trains with, batches in shuffled order and reads ``common.DATA``'s splits; the preset for more checks."""
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / f"{common.PRESET}.yaml").read_text(encoding="utf-8"))
    model, finetune, recipe = preset["model"], preset["finetune"], common.RECIPE
    assert {key: model[key] for key in common.MODEL} == common.MODEL
    assert model["emb_size"] == common.MODEL["hidden_size"]
    assert (finetune["epochs_num"], finetune["batch_size"], float(finetune["learning_rate"]),
            finetune["max_grad_norm"], finetune["seq_length"], finetune["metric"], finetune["length_bucketing"]) == \
        (recipe["epochs_num"], recipe["batch_size"], recipe["learning_rate"], recipe["max_grad_norm"],
         recipe["seq_length"], common.BEST_METRIC, False)
    assert (preset["optimizer"]["weight_decay"], float(preset["optimizer"]["eps"]), preset["lr_scheduler"]["warmup"]) \
        == (recipe["weight_decay"], recipe["eps"], recipe["warmup"])
    data = common.DATA.relative_to(ROOT).as_posix()
    assert all(finetune[f"{split}_path"] == f"{data}/{split}.tsv" for split in ("train", "dev", "test"))
    return preset
