"""An Optuna study kept in a file of the sweep directory, so a hyper-parameter search resumes.

Hydra's Optuna sweeper (``hparams_search=finetune_optuna``) pins Optuna 2.10, whose
database storage does not work with SQLAlchemy 2 and which has no journal storage yet.
:class:`JournalFileStorage` is Optuna's in-memory storage that appends every change to a
JSON-lines file (flushed to disk at once) and replays the file when it is opened: the
study, its trials, their parameters and values survive the process.  A trial that was
running when the search stopped is marked failed when the file is opened again.
Timestamps of replayed trials are those of the replay.

Resuming: run the same command with ``hydra.sweep.dir=`` the earlier sweep's directory.
The sweeper loads the study (TPE learns from every earlier trial), runs
``hydra.sweeper.n_trials`` more, and -- through the sweeper of
``hydra_plugins/uer_search`` -- numbers the new jobs after the earlier ones, so no job
directory is written twice and the results table lists them all.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def _trial_to_json(trial: Optional[FrozenTrial]) -> Optional[dict]:
    if trial is None:
        return None
    return {"state": trial.state.name, "values": trial.values, "params": trial.params,
            "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
            "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()}}


def _trial_from_json(data: Optional[dict]) -> Optional[FrozenTrial]:
    if data is None:
        return None
    return FrozenTrial(number=-1, state=TrialState[data["state"]], value=None, datetime_start=None,
                       datetime_complete=None, params=data["params"],
                       distributions={k: json_to_distribution(d) for k, d in data["distributions"].items()},
                       user_attrs=data["user_attrs"], system_attrs=data["system_attrs"],
                       intermediate_values={int(k): v for k, v in data["intermediate_values"].items()},
                       trial_id=-1, values=data["values"])


# Every change of the storage: (how its arguments are written, how they are read back).
_SAME = (lambda *args: list(args), lambda *args: args)
_CHANGES = {
    "create_new_study": _SAME,
    "delete_study": _SAME,
    "set_study_directions": (lambda study_id, directions: [study_id, [d.name for d in directions]],
                             lambda study_id, names: (study_id, [StudyDirection[n] for n in names])),
    "set_study_user_attr": _SAME,
    "set_study_system_attr": _SAME,
    "create_new_trial": (lambda study_id, template_trial=None: [study_id, _trial_to_json(template_trial)],
                         lambda study_id, template: (study_id, _trial_from_json(template))),
    "set_trial_state": (lambda trial_id, state: [trial_id, state.name],
                        lambda trial_id, name: (trial_id, TrialState[name])),
    "set_trial_param": (lambda trial_id, name, value, distribution: [trial_id, name, value,
                                                                     distribution_to_json(distribution)],
                        lambda trial_id, name, value, distribution: (trial_id, name, value,
                                                                     json_to_distribution(distribution))),
    "set_trial_values": (lambda trial_id, values: [trial_id, list(values)], lambda trial_id, values: (trial_id, values)),
    "set_trial_intermediate_value": _SAME,
    "set_trial_user_attr": _SAME,
    "set_trial_system_attr": _SAME,
}


class JournalFileStorage(optuna.storages.InMemoryStorage):
    """Optuna's in-memory storage, journaled to ``path`` (see the module docstring)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = Path(path)
        self._replaying = True
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                if number == len(lines):  # the last line, cut short by a kill: everything before it holds
                    break
                raise
            getattr(self, entry["op"])(*_CHANGES[entry["op"]][1](*entry["args"]))
        self._replaying = False
        for summary in self.get_all_study_summaries():
            study_id = self.get_study_id_from_name(summary.study_name)
            for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                self.set_trial_state(self.get_trial_id_from_study_id_trial_number(study_id, trial.number),
                                     TrialState.FAIL)

    def __repr__(self) -> str:  # the sweeper logs "Storage: ..."
        return f"journal file {self.path}"

    def trials_of(self, study_name: Optional[str]) -> int:
        """How many trials the study ``study_name`` holds (0 if there is no such study yet)."""
        try:
            return len(self.get_all_trials(self.get_study_id_from_name(study_name), deepcopy=False))
        except KeyError:
            return 0

    def _journal(self, op: str, args: tuple) -> None:
        if self._replaying:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"op": op, "args": _CHANGES[op][0](*args)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _journaled(op: str):
    base = getattr(optuna.storages.InMemoryStorage, op)
    signature = inspect.signature(base)

    def change(self, *args: Any, **kwargs: Any) -> Any:
        result = base(self, *args, **kwargs)
        self._journal(op, signature.bind(self, *args, **kwargs).args[1:])
        return result

    change.__name__ = op
    change.__doc__ = base.__doc__
    return change


for _op in _CHANGES:
    setattr(JournalFileStorage, _op, _journaled(_op))
