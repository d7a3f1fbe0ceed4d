"""``python main.py ...``: read the command line, check everything that can be checked, then run.

Before Hydra runs anything:

1. **The command line as users write it**: ``+experiment=NAME`` is ``experiment=NAME``
   (presets are a group of the defaults list); without ``stage=``, ``task=...`` means
   ``stage=finetune`` and ``tool=...`` means ``stage=tool``.
2. **Check before work**: the config is composed here once (for ``-m``, once per job of
   the sweep) and every problem is one ``error:`` line, exit status 2, before any job,
   worker or file: a key no schema of the run declares (with the closest one, or the
   stage it belongs to), a value of the wrong type, an option that does not exist, a
   device that is not there, a SLURM launch without ``-m``, and in a sweep an output
   path that two jobs would share.

Then Hydra composes the same config and runs the stage (:func:`uer.app.run_stage`).  A sweep
stopped by SIGINT or SIGTERM writes its table, says so in one line and exits 128 + the signal
(:func:`uer.sweep.stop_interrupted`).
"""

from __future__ import annotations

import difflib
import itertools
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from uer.app import run_stage
from uer.combinations import worded
from uer.composition import register_configs
from uer.config.validate import check_run_config, unknown_key
from uer.errors import UerError, one_line
from uer.launch import check_devices
from uer.models.compat import check_model
from uer.paths import CONF
from uer.stop_signals import stop_on_signals
from uer.sweep import stop_interrupted
from uer.training.fsdp import check_strategy
from uer.training.process import check_compile

log = logging.getLogger("uer")

# Hydra flags that take a value, and the ones after which nothing is run or composed here.
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
NO_RUN_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                "--experimental-rerun", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
MULTIRUN_FLAGS = {"--multirun", "-m"}
# Flags that print the config instead of running it: the config is checked, the machine is not.
INSPECT_FLAGS = {"--cfg", "-c"}
# Where runs write; in a sweep each must differ between jobs (or be left to the run directory).
OUTPUT_KEYS = ("output_model_path", "preprocess.dataset_path", "infer.prediction_path", "task.train_features_path",
               "tool.output_path")
PER_JOB = re.compile(r"\$\{hydra:job\.(num|id|override_dirname)\}|\$\{hydra:runtime\.output_dir\}")
MAX_SWEEP_CHECKS = 256


def main() -> None:
    """The entry point of ``main.py`` (after its malloc restart)."""
    flags, overrides = split_arguments(sys.argv[1:])
    overrides = normalize_overrides(overrides)
    sys.argv = [sys.argv[0], *flags, *overrides]
    register_configs()
    names = {flag.split("=", 1)[0] for flag in flags}
    if not NO_RUN_FLAGS.intersection(names):
        try:
            preflight(overrides, multirun=bool(MULTIRUN_FLAGS.intersection(names)),
                      machine=not INSPECT_FLAGS.intersection(names))
        except UerError as err:
            print(f"error: {one_line(str(err))}", file=sys.stderr, flush=True)
            sys.exit(2)
    if not MULTIRUN_FLAGS.intersection(names):
        hydra_app()
        return
    stop_on_signals()
    try:
        hydra_app()
    except KeyboardInterrupt as err:  # a single run ends itself (uer.app); a sweep's job lets it through
        signum = getattr(err, "signum", signal.SIGINT)
        try:
            message = stop_interrupted(signum)
        except Exception as exc:  # noqa: BLE001 - its table could not be written: still one line, no traceback
            message = f"interrupted by {signal.Signals(signum).name}; the sweep's table could not be written: {exc}"
        log.warning(message)
        print(message, file=sys.stderr, flush=True)
        logging.shutdown()
        # As uer.app does for a run: threads the interrupted job left running must not write while Python ends.
        os._exit(128 + signum)


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig):
    stop_on_signals()
    return run_stage(cfg)


def split_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """``(Hydra flags with their values, overrides)``."""
    flags, overrides = [], []
    args = iter(args)
    for arg in args:
        if arg.startswith("-") and "=" not in arg.split("=", 1)[0][1:] and not _looks_like_override(arg):
            flags.append(arg)
            if arg in VALUE_FLAGS:
                value = next(args, None)
                if value is not None:
                    flags.append(value)
        else:
            overrides.append(arg)
    return flags, overrides


def _looks_like_override(arg: str) -> bool:
    return arg.startswith("~") or (arg.startswith("+") and "=" in arg)


def normalize_overrides(overrides: list[str]) -> list[str]:
    """``+experiment=`` -> ``experiment=``; the stage ``task=``/``tool=`` imply when ``stage=`` is absent."""
    out = [f"experiment={override.split('=', 1)[1]}" if override.startswith(("+experiment=", "++experiment="))
           else override for override in overrides]
    keys = {override.split("=", 1)[0].lstrip("+~") for override in out}
    if "stage" not in keys:
        if "task" in keys:
            out.insert(0, "stage=finetune")
        elif "tool" in keys:
            out.insert(0, "stage=tool")
    return out


# ----------------------------------------------------------------------------------- checks

def preflight(overrides: list[str], multirun: bool, machine: bool = True) -> None:
    """Compose and check the run (every job of a basic sweep); a UerError for the first problem.

    ``machine=False`` (``--cfg``, which prints the config and runs nothing) leaves out what this machine
    has (its devices): a config for a GPU machine can be inspected anywhere."""
    overrides = normalize_overrides(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # noqa: BLE001 - Hydra's parse errors have several types
        raise UerError(_first_lines(err)) from None
    sweeps = [override for override in parsed if override.is_sweep_override()]
    fixed = [override.input_line for override in parsed if not override.is_sweep_override()]
    for override in sweeps:
        if override.is_hydra_override():
            key, _, value = override.input_line.partition("=")
            own = key.removeprefix("hydra.sweeper.params.")
            raise UerError(f"{override.input_line}: a setting of Hydra itself takes one value; a search sweeper reads "
                           f"a key's search space from the key itself: '{own}={value}'")
    if sweeps and not multirun:
        raise UerError(f"{sweeps[0].input_line} lists several values, which only a sweep runs: add -m")
    first = check_point([*fixed, *[_first_value(override) for override in sweeps]], multirun, machine=machine)
    sweeper = OmegaConf.select(first, "hydra.sweeper._target_", default="") or ""
    if not multirun:
        return
    if sweeper.endswith("BasicSweeper"):  # one job per point; no sweep override: a single job, nothing shared
        points = [[f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]
                  for override in sweeps]
        jobs = [first]
        for number, values in enumerate(itertools.product(*points)):
            if number == 0:
                continue
            if number >= MAX_SWEEP_CHECKS:
                log.warning("checked the first %d jobs of the sweep before it starts", MAX_SWEEP_CHECKS)
                break
            jobs.append(check_point([*fixed, *values], multirun, job=number, values=values, machine=machine))
        check_distinct_outputs(jobs)
    else:
        check_distinct_outputs([first, first])  # a search: every trial composes the same explicit paths


def _first_value(override) -> str:
    """One value of a sweep override, to compose a job with: the first listed, or an interval's start."""
    sweep = override.value()
    value = sweep.start if isinstance(sweep, IntervalSweep) else next(iter(override.sweep_string_iterator()))
    return f"{override.get_key_element()}={value}"


def check_point(overrides: list[str], multirun: bool, job: Optional[int] = None, values=(),
                machine: bool = True) -> DictConfig:
    """The composed config of one job (with its ``hydra`` node), checked; a UerError names the problem."""
    where = f"job {job} of the sweep ({' '.join(values)}): " if job is not None else ""
    try:
        cfg = compose_with_hydra(overrides)
    except UerError:
        raise
    except Exception as err:  # noqa: BLE001 - Hydra and OmegaConf raise many types
        raise UerError(where + composition_error(err, overrides)) from None
    run_cfg = without_hydra(cfg)
    try:
        check_run_config(run_cfg, OmegaConf.to_container(cfg.hydra.runtime.choices))
        launcher = OmegaConf.select(cfg, "hydra.launcher._target_", default="") or ""
        if "submitit" in launcher:
            if not multirun:
                raise UerError("hardware=slurm submits jobs through Hydra's submitit launcher, which runs only in "
                               "multirun mode: add -m (python main.py -m ... hardware=slurm)")
            if machine and shutil.which("srun") is None:
                raise UerError("hardware=slurm submits jobs to SLURM, but this machine has no srun on its PATH: run "
                               "the command on a SLURM login node, or choose hardware=cpu, 1gpu or 8gpu")
        elif machine:
            check_devices(run_cfg)
        if machine:
            check_run_directory(cfg, multirun)
        check_combination(run_cfg)
        check_strategy(run_cfg)
        check_compile(run_cfg)
    except UerError as err:
        raise UerError(where + worded(err)) from None
    return cfg


def check_run_directory(cfg: DictConfig, multirun: bool) -> None:
    """The directory Hydra creates for the run (or sweep) can be made: not a file, under a writable directory."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        path = Path(OmegaConf.select(cfg, key))
    except Exception:  # noqa: BLE001 - resolvable only inside the running app: Hydra checks it there
        return
    if path.exists() and not path.is_dir():
        raise UerError(f"{key}={path} is a file; choose a directory for the run's outputs")
    existing = next(parent for parent in (path, *path.absolute().parents) if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UerError(f"{key}={path}: {existing} is not a writable directory; choose another {key}, or run from a "
                       "directory you can write to")


def check_combination(cfg: DictConfig) -> None:
    """A training run from random weights: its embedding x encoder (x target) can work (stage=pretrain and
    stage=finetune check it again in ``prepare``, after a starting checkpoint's architecture is adopted)."""
    if cfg.stage not in ("pretrain", "finetune") or cfg.get("pretrained_model_path") or cfg.get("resume"):
        return
    pretrain = cfg.stage == "pretrain"
    check_model(cfg.embedding, cfg.encoder, cfg.target if pretrain else None, cfg.decoder if pretrain else None)


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


def without_hydra(cfg: DictConfig) -> DictConfig:
    run_cfg = cfg.copy()
    with open_dict(run_cfg):
        run_cfg.pop("hydra", None)
    return run_cfg


def check_distinct_outputs(jobs: list[DictConfig]) -> None:
    """A UerError when an explicit output path would be the same for two jobs of a sweep."""
    seen: dict[tuple[str, str], int] = {}
    for number, cfg in enumerate(jobs):
        raw = OmegaConf.to_container(without_hydra(cfg), resolve=False)
        for key in OUTPUT_KEYS:
            value = _select(raw, key)
            if value in (None, "") or (isinstance(value, str) and PER_JOB.search(value)):
                continue
            if (key, str(value)) in seen:
                example = f"{key}=outputs/sweep_${{hydra:job.num}}"
                raise UerError(f"{key}={value} is the same for every job of this sweep, so each job would overwrite "
                               f"the last one's; leave it unset (each job writes into its own directory) or make it "
                               f"per job, e.g. '{example}'")
            seen[(key, str(value))] = number


def _select(raw: dict, key: str):
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# ---------------------------------------------------------------------------- Hydra's errors

def composition_error(err: Exception, overrides: list[str]) -> str:
    """Hydra's (or OmegaConf's) composition error as one line that names the key and the fix."""
    stage = _stage_of(overrides)
    text = str(err)
    if "Could not find '" in text or "You must specify" in text:
        return _missing_option(err, text, stage)
    if isinstance(err, MissingConfigException):  # a file the config needs is not there
        return _first_lines(err)
    match = re.search(r"Could not override '([^']+)'\. No match in the defaults list", text)
    if match:
        return _group_not_in_stage(match.group(1), stage)
    cause = _keyed_cause(err)
    full_key = _quoted(text, r"Could not override '([^']+)'") or getattr(cause, "full_key", None)
    if isinstance(cause, ValidationError) and full_key:
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == full_key), None)
        reason = str(cause).strip().splitlines()[0]
        return f"{full_key}={value}: {reason}" if value is not None else f"{full_key}: {reason}"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and full_key:
        rest = [o for o in overrides if not _same_or_below(o.split("=", 1)[0].lstrip("+~"), full_key)]
        try:
            composed = compose_with_hydra(rest)
        except Exception:  # noqa: BLE001 - no context: the message goes without suggestions
            return unknown_key(full_key, stage)
        choices = OmegaConf.to_container(composed.hydra.runtime.choices)
        return unknown_key(full_key, composed.stage, without_hydra(composed), choices)
    return _first_lines(err)


def _missing_option(err: Exception, text: str, stage: str) -> str:
    options = list(getattr(err, "options", None) or [])
    if not options:
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
    match = re.search(r"You must specify '([^']+)'", text)
    if match:
        group = match.group(1)
        return f"stage={stage} needs {group}=NAME; choose one of: {', '.join(options)}"
    match = re.search(r"Could not find '([^']+)'", text)
    group, _, option = (match.group(1) if match else "?/?").rpartition("/")
    close = difflib.get_close_matches(option, options, n=1)
    hint = f"did you mean {group}={close[0]}? " if close else ""
    return f"{group}={option} is not an option; {hint}choose one of: {', '.join(options)}"


def _group_not_in_stage(group: str, stage: str) -> str:
    owners = [path.stem for path in sorted((CONF / "stage").glob("*.yaml"))
              if re.search(rf"^\s+- /{re.escape(group)}:", path.read_text(encoding="utf-8"), flags=re.M)]
    if owners:
        return (f"{group}= is a choice of stage={' / '.join(owners)}, but this run is stage={stage}; "
                f"drop stage={stage} (task= implies finetune, tool= implies tool) or drop {group}=")
    return f"{group}= is not a config group of stage={stage}"


def _same_or_below(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(f"{prefix}.")


def _stage_of(overrides: list[str]) -> str:
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "stage":
            return value
    return "pretrain"


def _keyed_cause(err: BaseException) -> BaseException:
    """The first exception of the chain that names a config key (OmegaConf's), else ``err``."""
    cause = err
    while cause is not None:
        if getattr(cause, "full_key", None):
            return cause
        cause = cause.__cause__ or cause.__context__
    return err


def _quoted(text: str, pattern: str) -> Optional[str]:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _first_lines(err: Exception) -> str:
    """The lines of Hydra's message that say something, joined (no key dumps, no hints to set env vars)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()
             and not line.strip().startswith(("full_key:", "object_type=", "reference_type=", "Set the environment"))]
    return "; ".join(lines) or type(err).__name__

