"""A search's seeds: the confirmation's never meet a trial's, whatever the counts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from convdrop.lab.sweep.search.settings import (
    CONFIRM_SEED_OFFSET,
    SearchSettings,
    confirmation_seeds,
    shown_seeds,
    trial_seeds,
)


@pytest.mark.parametrize("trial_count", [1, 2, 100])
@pytest.mark.parametrize("confirm_count", [0, 1, 3, 100])
def test_confirmation_seeds_are_disjoint_from_trial_seeds(trial_count, confirm_count):
    trials = trial_seeds(SearchSettings(trials=1, trial_seeds=trial_count))
    fresh = confirmation_seeds(confirm_count)
    assert trials == list(range(trial_count)) and len(fresh) == confirm_count
    assert not set(trials) & set(fresh)
    assert all(seed >= CONFIRM_SEED_OFFSET for seed in fresh)


def test_bounds_of_the_settings():
    with pytest.raises(ValidationError):
        SearchSettings(trials=0)
    with pytest.raises(ValidationError):
        SearchSettings(trials=1, trial_seeds=101)  # would reach towards the offset
    with pytest.raises(ValidationError):
        SearchSettings(trials=1, study="../elsewhere")
    with pytest.raises(ValueError):
        confirmation_seeds(-1)


def test_shown_seeds():
    assert shown_seeds([]) == "none" and shown_seeds([0]) == "0"
    assert shown_seeds([1000, 1001, 1002]) == "1000-1002"
