"""Confirmation decides, not the search: fabricated trials where the search's best is a
lucky draw and another setting is truly best, and fabricated confirmation runs."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from convdrop.lab.sweep.expand import Point, build_sweep
from convdrop.lab.sweep.report import verdict
from convdrop.lab.sweep.search.confirm import (
    Confirmation,
    analyse_confirmation,
    candidates,
    confirmation_sweep,
    curses,
)
from convdrop.lab.sweep.search.report import curse_text, winner_spec
from convdrop.lab.sweep.search.settings import SearchSettings, confirmation_seeds, trial_seeds

TINY = {"data": "synthetic", "train_size": 24, "epochs": 1, "seeds": 5, "batch_size": 12,
        "image_size": 16, "model_options": {"width": 4}}
DISTRIBUTIONS = {"p": FloatDistribution(0.05, 0.3, log=True), "block_size": IntDistribution(1, 5)}


def _point(p: float, block: int) -> Point:
    return Point(f"dropblock_scheduled-p{p:g}-b{block}", p, block_size=block, budget=p / 2,
                 series_label=f"block {block}")


LUCKY, TRUE_BEST, THIRD = _point(0.3, 5), _point(0.1, 3), _point(0.05, 1)


def _trial(number: int, point: Point, value: float | None, state=TrialState.COMPLETE,
           steps: dict[int, float] | None = None):
    trial = create_trial(
        state=state, value=value, params={"p": point.p, "block_size": point.block_size},
        distributions=DISTRIBUTIONS, intermediate_values=steps or {},
        user_attrs={"setting": point.name, "point": asdict(point), "test_acc": (value or 0) - 0.01,
                    "options": {"base": "dropblock_scheduled", "p": point.p,
                                "block_size": point.block_size}})
    trial.number = number
    return trial


TRIALS = [_trial(0, THIRD, 0.86), _trial(1, TRUE_BEST, 0.90), _trial(2, LUCKY, 0.99),
          _trial(3, TRUE_BEST, 0.88),  # the same setting again: its best trial counts
          _trial(4, _point(0.2, 2), None, TrialState.PRUNED, {5: 0.999}),  # never a candidate
          _trial(5, _point(0.15, 4), None, TrialState.FAIL)]


def test_candidates_are_the_best_trial_of_each_setting():
    chosen = candidates(TRIALS, 3)
    assert [(c.point.name, c.trial, c.search_val) for c in chosen] == [
        (LUCKY.name, 2, 0.99), (TRUE_BEST.name, 1, 0.90), (THIRD.name, 0, 0.86)]
    assert chosen[0].point == LUCKY and chosen[0].options["block_size"] == 5
    assert [c.trial for c in candidates(TRIALS, 1)] == [2] and candidates(TRIALS, 0) == []
    assert candidates([], 3) == []


def _runs(name: str, mean: float, seeds: list[int], rng: np.random.Generator) -> list[dict]:
    return [{"method": name, "seed": s, "status": "ok", "test_acc": float(a),
             "val_acc": float(a) + 0.005, "train_acc": min(1.0, float(a) + 0.05)}
            for s, a in zip(seeds, mean + rng.normal(0, 0.01, len(seeds)))]


def test_the_verdict_comes_from_the_fresh_seeds_and_measures_the_curse():
    sweep = build_sweep(overrides=TINY, sweep_overrides={"p": [0.05, 0.3], "block_size": [1, 5]},
                        probe=lambda spec, name: 0.01)
    chosen = candidates(TRIALS, 2)
    confirming = confirmation_sweep(sweep, chosen)
    assert confirming.spec.methods == ["control", LUCKY.name, TRUE_BEST.name]
    assert confirming.spec.options_for(LUCKY.name).p == 0.3
    seeds = confirmation_seeds(5)
    assert not set(seeds) & set(trial_seeds(SearchSettings(trials=1, trial_seeds=3)))
    rng = np.random.default_rng(0)  # seeded: the sd 0.01 noise is far below the 0.12 gap
    results = (_runs("control", 0.85, seeds, rng) + _runs(LUCKY.name, 0.80, seeds, rng)
               + _runs(TRUE_BEST.name, 0.92, seeds, rng))
    stats = analyse_confirmation(confirming, results, seeds)
    assert stats.best == TRUE_BEST.name  # not the search's best trial
    assert not stats.point(LUCKY.name).within_noise and stats.beats_control
    assert "p = 0.1, block 3 is best" in verdict(confirming, stats)
    measured = curses(chosen, results)
    assert measured[0].setting == LUCKY.name and measured[0].confirmed_val.n == 5
    assert measured[0].val_gap == pytest.approx(0.99 - np.mean(
        [r["val_acc"] for r in results if r["method"] == LUCKY.name]))
    assert 0.17 < measured[0].val_gap < 0.21 and abs(measured[1].val_gap) < 0.03
    confirmation = Confirmation(confirming, stats, results, seeds, measured)
    text = curse_text(confirmation, "0")
    assert "overestimated it by 18." in text or "overestimated it by 19." in text
    assert f"The confirmation ranks {TRUE_BEST.name} first." in text
    winner = winner_spec(confirmation)
    assert winner.methods == [TRUE_BEST.name] and winner.seeds == 5
    assert winner.run_key(TRUE_BEST.name) == confirming.spec.run_key(TRUE_BEST.name)


def test_a_search_seed_can_never_enter_the_verdict():
    sweep = build_sweep(overrides=TINY, sweep_overrides={"p": [0.05, 0.3]},
                        probe=lambda spec, name: 0.01)
    confirming = confirmation_sweep(sweep, candidates(TRIALS, 1))
    seeds = confirmation_seeds(2)
    rng = np.random.default_rng(1)
    fresh = _runs("control", 0.85, seeds, rng) + _runs(LUCKY.name, 0.80, seeds, rng)
    lucky_trial_run = _runs(LUCKY.name, 0.99, [0], rng)
    with pytest.raises(ValueError, match=r"confirmation seeds \[1000, 1001\]; got runs "
                                         r"\[\('dropblock_scheduled-p0.3-b5', 0\)\]"):
        analyse_confirmation(confirming, fresh + lucky_trial_run, seeds)


def test_without_a_control_the_confirmation_compares_the_candidates_only():
    sweep = build_sweep(overrides=TINY, sweep_overrides={"p": [0.05, 0.3], "control": False},
                        probe=lambda spec, name: 0.01)
    confirming = confirmation_sweep(sweep, candidates(TRIALS, 2))
    assert confirming.spec.methods == [LUCKY.name, TRUE_BEST.name]
    seeds = confirmation_seeds(3)
    rng = np.random.default_rng(2)
    stats = analyse_confirmation(confirming, _runs(LUCKY.name, 0.8, seeds, rng)
                                 + _runs(TRUE_BEST.name, 0.9, seeds, rng), seeds)
    assert stats.best == TRUE_BEST.name and not stats.beats_control
