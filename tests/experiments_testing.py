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


def assert_preset_follows(preset: dict, model: dict, recipe: dict, best_metric: str) -> None:
    """A reproduction's preset (its YAML as a dict) holds the ``model`` and ``recipe`` its peer script trains with:
    the model's shape, the epochs, batch, learning rate, clipping, length, the metric that picks the best epoch,
    shuffled batches, AdamW's weight decay and eps, and the warm-up."""
    found, finetune = preset["model"], preset["finetune"]
    assert {key: found[key] for key in model} == model
    assert found["emb_size"] == model["hidden_size"]
    assert (finetune["epochs_num"], finetune["batch_size"], float(finetune["learning_rate"]),
            finetune["max_grad_norm"], finetune["seq_length"], finetune["metric"], finetune["length_bucketing"]) == \
        (recipe["epochs_num"], recipe["batch_size"], recipe["learning_rate"], recipe["max_grad_norm"],
         recipe["seq_length"], best_metric, False)
    assert (preset["optimizer"]["weight_decay"], float(preset["optimizer"]["eps"]), preset["lr_scheduler"]["warmup"]) \
        == (recipe["weight_decay"], recipe["eps"], recipe["warmup"])


def assert_text2text_preset_shares(common: ModuleType, dataset) -> None:
    """``dataset``'s preset (``conf/experiment/PRESET.yaml``) holds the model, recipe, best-epoch metric and data of
    ``experiments/text2text/common.py`` (``common``): what uer's side runs is what the transformers side runs."""
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / f"{dataset.preset}.yaml").read_text(encoding="utf-8"))
    recipe = dataset.recipe
    assert_preset_follows(preset, common.MODEL, {**recipe, "seq_length": recipe["source_length"]}, dataset.best_metric)
    task, finetune = preset["task"], preset["finetune"]
    assert (task["tgt_seq_length"], task["generation"]["max_new_tokens"], task["generation"]["num_beams"]) == \
        (recipe["target_length"], recipe["max_new_tokens"], 1)
    data = dataset.data.relative_to(ROOT).as_posix()
    assert all(finetune[f"{split}_path"] == f"{data}/{split}.tsv" for split in ("train", "dev", "test"))


def preset_of_the_recipe(common) -> dict:
    """The preset ``conf/experiment/{common.PRESET}.yaml`` of a BERT reproduction, checked to hold the model
    (``common.MODEL``), recipe (``common.RECIPE``) and best-epoch metric (``common.BEST_METRIC``) its transformers
    side trains with (:func:`assert_preset_follows`) and to read ``common.DATA``'s splits; the preset for more checks."""
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / f"{common.PRESET}.yaml").read_text(encoding="utf-8"))
    assert_preset_follows(preset, common.MODEL, common.RECIPE, common.BEST_METRIC)
    data = common.DATA.relative_to(ROOT).as_posix()
    assert all(preset["finetune"][f"{split}_path"] == f"{data}/{split}.tsv" for split in ("train", "dev", "test"))
    return preset
