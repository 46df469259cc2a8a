"""Where a search's study lives, and opening it: Optuna's storage, sampler and pruner.

The default storage is Optuna's journal file ``OUT/optuna.journal``
(``JournalStorage`` over ``JournalFileBackend``, whose lock lets several processes append
to it), which needs no server. ``--storage URL`` is any database URL Optuna's
``RDBStorage`` accepts (PostgreSQL, MySQL, SQLite), shared by several machines; it is
parsed and connected to before anything trains, and a bad URL or an unreachable server is
one :class:`StorageError` line, the password hidden. Database studies send Optuna's
heartbeat, so a trial whose machine died is failed and queued again by Optuna
(``RetryHeartbeatStaleTrialCallback``).

A study remembers what it searches (the space, the experiment's settings and the trial
seeds, as study attributes): a rerun, or another process, that would add trials of another
search to it is refused with the differences named.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url

from convdrop.errors import UserError
from convdrop.lab.runs.preflight import settings_diff
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.sweep.search.settings import SearchSettings
from convdrop.lab.sweep.search.space import Space, differences

__all__ = ["JOURNAL_NAME", "StorageError", "check_url", "experiment_of", "journal_storage",
           "make_pruner", "make_sampler", "open_study", "shown_url", "url_storage"]

JOURNAL_NAME = "optuna.journal"
HEARTBEAT_S = 60  # a database trial's heartbeat; a trial silent for GRACE_S is failed
GRACE_S = 300
CONNECT_TIMEOUT_S = 10
CREATE_ATTEMPTS = 4
SEARCH_ATTR = "convdrop_search"  # one attribute, written at once: {"space", "experiment"}
URL_EXAMPLE = "e.g. postgresql://user@127.0.0.1:5432/optuna or sqlite:///study.db"


class StorageError(UserError, ValueError):
    """A study's storage cannot be used: a bad URL, a server out of reach, another search."""


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def check_url(url: str) -> None:
    """Refuse a string that is not a database URL, before anything connects."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"--storage {url!r}: not a database URL; expected "
                           f"DIALECT[+DRIVER]://USER@HOST[:PORT]/DATABASE, {URL_EXAMPLE}"
                           ) from None
    if not parsed.get_backend_name():
        raise StorageError(f"--storage {url!r}: the URL names no database kind; {URL_EXAMPLE}")


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def url_storage(url: str) -> RDBStorage:
    """Connect to the database at ``url`` (creating Optuna's tables on first use)."""
    check_url(url)
    shown = shown_url(url)
    try:
        return _connect(url)
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"--storage {shown!r}: unknown database kind "
                           f"{make_url(url).drivername!r}; {URL_EXAMPLE}") from None
    except ImportError as err:
        raise StorageError(f"--storage {shown!r}: its database driver is not installed "
                           f"({_first_line(err)})") from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise StorageError(f"--storage {shown!r}: cannot use the database "
                           f"({_first_line(err)})") from None


def _connect(url: str, attempts: int = CREATE_ATTEMPTS) -> RDBStorage:
    """``RDBStorage``; processes that create its tables at the same moment collide on
    PostgreSQL's catalog (a unique-key error), so that is retried: the tables exist then."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # long trials outlive idle connections
    if make_url(url).get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                  grace_period=GRACE_S, heartbeat_stale_trial_callback=(
                                      RetryHeartbeatStaleTrialCallback(max_retry=3)))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt + 1 >= attempts:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise ValueError(f"attempts must be >= 1, got {attempts}")


def journal_storage(out: Path) -> JournalStorage:
    """The journal file inside ``out`` (created empty if absent)."""
    return JournalStorage(JournalFileBackend(str(Path(out) / JOURNAL_NAME)))


def experiment_of(base: ExperimentSpec, settings: SearchSettings) -> dict[str, Any]:
    """What a trial's value depends on besides its setting: the run settings shared by
    every method (not the worker counts, which only spread runs) and the trial seeds."""
    shared = base.run_settings("control")["shared"]
    shared = {k: v for k, v in shared.items() if k not in ("workers", "loader_workers")}
    return {"shared": shared, "trial_seeds": settings.trial_seeds}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))  # as a study attribute reads back


def open_study(storage: BaseStorage, name: str, space: Space, experiment: dict[str, Any], *,
               where: str, sampler: BaseSampler, pruner: BasePruner) -> optuna.Study:
    """Load study ``name`` or create it; another search's study is refused, naming how it
    differs. An existing study is only read until it passes the check."""
    mine = _json({"space": space.to_json(), "experiment": experiment})
    if name in optuna.study.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                  pruner=pruner)
        _check_same(study, mine, where)
    else:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StorageError(f"study {name!r} in {where} minimizes; a convdrop search "
                           "maximizes validation accuracy: choose another --study")
    _check_same(study, mine, where)  # one created at the same moment by another process
    if SEARCH_ATTR not in study.user_attrs:
        study.set_user_attr(SEARCH_ATTR, mine)
    return study


def _check_same(study: optuna.Study, mine: dict[str, Any], where: str) -> None:
    stored = study.user_attrs.get(SEARCH_ATTR)
    if stored is None:
        return
    changes = differences(stored["space"], mine["space"])
    changes += settings_diff(stored["experiment"], mine["experiment"])
    if changes:
        raise StorageError(
            f"study {study.study_name!r} in {where} searches something else than this sweep "
            f"({'; '.join(changes)}); use the same [sweep] table and settings, or another "
            "--study or --out")


def make_sampler(settings: SearchSettings, space: Space) -> BaseSampler:
    """TPE, random, or the grid of the table's listed values."""
    if settings.sampler == "grid":
        return GridSampler(space.grid(), seed=settings.sampler_seed)
    if settings.sampler == "random":
        return RandomSampler(seed=settings.sampler_seed)
    return TPESampler(seed=settings.sampler_seed)


def make_pruner(settings: SearchSettings, epochs: int) -> BasePruner:
    """A pruner over the trial's steps (``trial_seeds x epochs`` validation accuracies).

    The median rule waits for 5 trials and half of the first seed's epochs: early
    validation accuracy is noisy, and a scheduled drop rate is still ramping up.
    """
    if settings.pruner == "median":
        return MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 2))
    if settings.pruner == "hyperband":
        return HyperbandPruner(min_resource=max(1, epochs // 4),
                               max_resource=settings.trial_seeds * epochs, reduction_factor=3)
    return NopPruner()
