"""The Optuna study of hparams_search=finetune_optuna in a journal file: replayed as it was, a trial cut off
by a kill failed on reopening, a half-written last line tolerated; and the overrides the preset prints."""

import re

import pytest

optuna = pytest.importorskip("optuna", reason="pip install -e '.[search]'")

from uer.cli import preflight  # noqa: E402
from uer.errors import UerError  # noqa: E402
from uer.search import JournalFileStorage  # noqa: E402
from uer_testing import ROOT  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
PRESET = ROOT / "conf" / "hparams_search" / "finetune_optuna.yaml"


def objective(trial):
    return trial.suggest_float("lr", 1e-5, 1e-3, log=True) * trial.suggest_categorical("batch", [16, 32])


def snapshot(study):
    return [(t.number, t.state.name, t.params, t.values, t.distributions, t.user_attrs) for t in study.trials]


def test_a_study_reopened_from_its_file_is_the_study_that_was_written(tmp_path):
    path = tmp_path / "study.jsonl"
    study = optuna.create_study(study_name="s", storage=JournalFileStorage(str(path)), direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=1))
    study.optimize(objective, n_trials=3)
    study.set_user_attr("note", "kept")
    pruned = study.ask()
    pruned.report(0.5, step=1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.ask()  # running when the process "stops"
    before = snapshot(study)
    storage = JournalFileStorage(str(path))
    again = optuna.load_study(study_name="s", storage=storage)
    after = snapshot(again)
    assert after[:4] == before[:4] and again.user_attrs == {"note": "kept"}
    assert again.trials[3].intermediate_values == {1: 0.5}
    assert before[4][1] == "RUNNING" and after[4][1] == "FAIL"  # cut off by the stop: failed, not running forever
    assert again.best_trial.number == study.best_trial.number and storage.trials_of("s") == 5
    assert storage.trials_of("another") == 0
    again.optimize(objective, n_trials=1)  # the search goes on where it stopped
    assert [t.number for t in optuna.load_study(study_name="s", storage=JournalFileStorage(str(path))).trials] == \
        [0, 1, 2, 3, 4, 5]


def test_a_last_line_cut_short_by_a_kill_is_dropped_and_only_the_last(tmp_path):
    path = tmp_path / "study.jsonl"
    optuna.create_study(study_name="s", storage=JournalFileStorage(str(path))).optimize(objective, n_trials=2)
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '{"op": "create_new_tri', encoding="utf-8")
    assert len(optuna.load_study(study_name="s", storage=JournalFileStorage(str(path))).trials) == 2
    lines = text.splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError):
        JournalFileStorage(str(path))


def printed_overrides() -> list[str]:
    """The overrides the preset's comments show, as a user would copy them."""
    comments = "\n".join(line for line in PRESET.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    quoted = re.findall(r"'([\w.]+=[^']+)'", comments)
    plain = re.findall(r"(?<![\w.'])((?:hydra|finetune)\.[\w.]+=[\w./-]+)", comments)
    return quoted + [o for o in plain if not o.endswith("=...")]


def test_every_override_the_search_preset_prints_is_accepted(tmp_path):
    overrides = printed_overrides()
    assert "finetune.learning_rate=tag(log, interval(5e-6, 5e-4))" in overrides
    assert "hydra.sweeper.n_trials=50" in overrides and len(overrides) >= 4
    base = ["hparams_search=finetune_optuna", "task=classifier", f"finetune.train_path={tmp_path}/t.tsv",
            f"finetune.dev_path={tmp_path}/d.tsv"]
    for override in overrides:
        preflight([*base, override.replace("multirun/finetune/DATE/TIME", str(tmp_path))], multirun=True)


def test_a_search_space_given_to_hydra_s_own_params_says_where_it_goes():
    with pytest.raises(UerError, match=r"a search sweeper reads a key's search space from the key itself: "
                                       r"'finetune.learning_rate=tag\(log, interval\(5e-6, 5e-4\)\)'"):
        preflight(["hparams_search=finetune_optuna", "task=classifier",
                   "hydra.sweeper.params.finetune.learning_rate=tag(log, interval(5e-6, 5e-4))"], multirun=True)
