"""The [sweep] table read as a search space: ranges, fixed axes, refusals, and a real
Optuna trial's proposal read back as a setting."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from convdrop.errors import SpecError
from convdrop.lab.sweep.search.space import differences, space_of, suggest, trial_table
from convdrop.lab.sweep.settings import SweepSettings

DOSE = SweepSettings(method="dropblock_scheduled", p=[0, 0.05, 0.1, 0.2, 0.3],
                     block_size=[1, 3, 5])


def test_lists_become_ranges_and_zero_stays_the_control():
    space = space_of(DOSE)
    assert space.rates == (0.05, 0.3) and space.block_size == (1, 5)
    found = space.distributions()
    assert found["p"] == FloatDistribution(0.05, 0.3, log=True)
    assert found["block_size"] == IntDistribution(1, 5)
    assert space.grid() == {"p": [0.05, 0.1, 0.2, 0.3], "block_size": [1, 3, 5]}
    assert space.to_json() == {"method": "dropblock_scheduled", "p": [0.05, 0.3],
                               "block_size": [1, 5], "placement": None, "schedule": None}
    assert space.describe() == ("dropblock_scheduled: p log-uniform in [0.05, 0.3]; "
                                "block_size integer in [1, 5]")


def test_one_value_is_fixed_and_names_are_categorical():
    table = SweepSettings(method="dropout", budget=[0.001, 0.004], placement=["head",
                          "every_conv"], schedule=["linear"])
    space = space_of(table)
    found = space.distributions()
    assert set(found) == {"budget", "placement"}
    assert found["placement"] == CategoricalDistribution(("head", "every_conv"))
    trial = optuna.trial.FixedTrial({"budget": 0.0012345, "placement": "every_conv"})
    values = suggest(trial, space)
    assert values == {"budget": 0.00123, "placement": "every_conv", "schedule": "linear"}
    one = trial_table(table, values)
    assert one.budget == [0.00123] and one.placement == ["every_conv"] and not one.control


def test_a_proposed_rate_is_rounded_so_equal_settings_share_a_name():
    space = space_of(DOSE)
    assert suggest(optuna.trial.FixedTrial({"p": 0.0734123, "block_size": 4}), space) == {
        "p": 0.0734, "block_size": 4}
    assert suggest(optuna.trial.FixedTrial({"p": 0.07338, "block_size": 4}), space)["p"] == 0.0734


def test_a_real_study_proposes_inside_the_ranges():
    space = space_of(DOSE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = suggest(trial, space)
        assert 0.05 <= values["p"] <= 0.3 and values["block_size"] in range(1, 6)
        study.tell(trial, values["p"])


@pytest.mark.parametrize("table, message", [
    (SweepSettings(p=[0.1, 0.2], block_size=[1, 3], pairing="zip"), "sweep.pairing: 'zip'"),
    (SweepSettings(p=[0.1, 0.2], adaptive=True), "sweep.adaptive: successive halving"),
    (SweepSettings(p=[0, 0.1], block_size=[3]), "sweep: nothing to search, every axis has "
                                                "one value (p = 0.1); give a range"),
])
def test_a_table_that_cannot_be_searched_is_one_line(table, message):
    with pytest.raises(SpecError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        space_of(table)


def test_differences_name_each_key_with_both_values():
    mine = space_of(DOSE).to_json()
    other = space_of(DOSE.model_copy(update={"block_size": [1, 7],
                                             "placement": ["every_conv"]})).to_json()
    assert differences(other, mine) == ["block_size 1..7 there, 1..5 now",
                                        "placement every_conv there, not searched now"]
    assert differences(mine, dict(mine)) == []
