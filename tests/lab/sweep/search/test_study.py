"""Storages and studies: bad URLs and unreachable servers as one line (password hidden),
and a study of another search refused with the difference named; real Optuna storages
(a journal file and SQLite), no server needed."""

from __future__ import annotations

import socket

import optuna
import pytest
from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import GridSampler, RandomSampler, TPESampler

from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.sweep.search.settings import SearchSettings
from convdrop.lab.sweep.search.space import space_of
from convdrop.lab.sweep.search.study import (
    StorageError,
    check_url,
    experiment_of,
    journal_storage,
    make_pruner,
    make_sampler,
    open_study,
    shown_url,
    url_storage,
)
from convdrop.lab.sweep.settings import SweepSettings

TABLE = SweepSettings(p=[0.05, 0.3], block_size=[1, 5])
SETTINGS = SearchSettings(trials=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _experiment(**changes):
    base = build_spec(overrides={"data": "synthetic", "epochs": 1, "methods": ["control"],
                                 **changes})
    return experiment_of(base, SETTINGS)


@pytest.mark.parametrize("url, message", [
    ("not a url", "--storage 'not a url': not a database URL; expected DIALECT"),
    ("nosuchdb://host/db", "--storage 'nosuchdb://host/db': unknown database kind 'nosuchdb'"),
])
def test_a_bad_url_is_one_line(url, message):
    with pytest.raises(StorageError) as caught:
        url_storage(url)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_an_unreachable_server_is_one_line_without_the_password():
    url = f"postgresql://someone:s3cret@127.0.0.1:{_free_port()}/optuna"
    check_url(url)  # well formed
    with pytest.raises(StorageError) as caught:
        url_storage(url)
    message = str(caught.value)
    assert message.startswith(f"--storage '{shown_url(url)}': cannot use the database (")
    assert "s3cret" not in message and "***" in message and "\n" not in message


def test_sqlite_study_remembers_its_search_and_refuses_another(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = space_of(TABLE)
    kwargs = {"where": "here", "sampler": RandomSampler(), "pruner": NopPruner()}
    study = open_study(url_storage(url), "s", space, _experiment(), **kwargs)
    study.enqueue_trial({"p": 0.1, "block_size": 2})
    again = open_study(url_storage(url), "s", space, _experiment(), **kwargs)
    assert len(again.trials) == 1
    assert again.user_attrs["convdrop_search"]["space"]["p"] == [0.05, 0.3]
    other = space_of(TABLE.model_copy(update={"block_size": [1, 7]}))
    with pytest.raises(StorageError, match=r"^study 's' in here searches something else than "
                       r"this sweep \(block_size 1\.\.5 there, 1\.\.7 now; epochs 1 there, "
                       r"2 now\); use the same \[sweep\] table"):
        open_study(url_storage(url), "s", other, _experiment(epochs=2), **kwargs)


def test_a_journal_study_is_checked_without_writing(tmp_path):
    space = space_of(TABLE)
    kwargs = {"where": "the journal", "sampler": RandomSampler(), "pruner": NopPruner()}
    open_study(journal_storage(tmp_path), "s", space, _experiment(), **kwargs)
    journal = tmp_path / "optuna.journal"
    before = journal.read_bytes()
    with pytest.raises(StorageError, match="trial_seeds 1 there, 2 now"):
        open_study(journal_storage(tmp_path), "s", space,
                   experiment_of(build_spec(overrides={"data": "synthetic", "epochs": 1,
                                                       "methods": ["control"]}),
                                 SearchSettings(trials=1, trial_seeds=2)), **kwargs)
    assert journal.read_bytes() == before
    # the worker counts only spread runs: not a difference
    open_study(journal_storage(tmp_path), "s", space, _experiment(workers=2), **kwargs)


def test_a_minimizing_study_is_refused(tmp_path):
    optuna.create_study(study_name="m", storage=journal_storage(tmp_path))
    with pytest.raises(StorageError, match="minimizes"):
        open_study(journal_storage(tmp_path), "m", space_of(TABLE), _experiment(),
                   where="w", sampler=RandomSampler(), pruner=NopPruner())


def test_samplers_and_pruners():
    space = space_of(TABLE)
    kinds = {name: type(make_sampler(SearchSettings(trials=1, sampler=name), space))
             for name in ("tpe", "random", "grid")}
    assert kinds == {"tpe": TPESampler, "random": RandomSampler, "grid": GridSampler}
    median = make_pruner(SearchSettings(trials=1), epochs=10)
    assert isinstance(median, MedianPruner)
    assert isinstance(make_pruner(SearchSettings(trials=1, pruner="hyperband"), 10),
                      HyperbandPruner)
    assert isinstance(make_pruner(SearchSettings(trials=1, pruner="none"), 10), NopPruner)
