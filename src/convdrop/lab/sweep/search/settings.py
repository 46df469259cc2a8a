"""How a search runs: its flags (one pydantic model, so ``convdrop sweep`` builds them) and
its seeds.

Trials train seeds ``0 .. trial_seeds - 1``; the confirmation trains
``CONFIRM_SEED_OFFSET .. CONFIRM_SEED_OFFSET + seeds - 1``. A spec allows at most 100
seeds, so the two sets never meet: the confirmed accuracy is measured on runs the search
never saw, which is what makes it an honest estimate of the winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from convdrop.lab.spec.experiment import SafeName

__all__ = ["CONFIRM_SEED_OFFSET", "SearchSettings", "confirmation_seeds", "shown_seeds",
           "trial_seeds"]

CONFIRM_SEED_OFFSET = 1000  # confirmation seeds start here; trial seeds stay below 100


class SearchSettings(BaseModel):
    """The flags of ``convdrop sweep --search optuna``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int | None = Field(None, ge=1, description="finished trials the study should "
                               "hold: a process adds trials until it does, so a rerun "
                               "resumes (required with --search optuna)")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="how trials are proposed: tpe, random, or grid (the [sweep] "
        "table's listed values, one combination a trial)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stop a trial early on its per-epoch validation accuracy")
    storage: str | None = Field(
        None, description="database URL of the study, shared by several processes or "
        "machines (any URL Optuna accepts, e.g. postgresql://user@host:5432/db); none = the "
        "journal file OUT/optuna.journal")
    study: SafeName | None = Field(None, description="study name; none = the sweep's name")
    confirm: int = Field(3, ge=0, le=50, description="best settings re-run with the control "
                         "over --seeds fresh seeds after the search; 0 = none (a process "
                         "that only adds trials)")
    trial_seeds: int = Field(1, ge=1, le=100, description="seeds each trial trains (0..N-1); "
                             "its objective is their mean final validation accuracy")
    sampler_seed: int | None = Field(None, ge=0, lt=2**32, description="seed of the "
                                     "sampler; none = fresh (give several processes "
                                     "different ones)")


def trial_seeds(settings: SearchSettings) -> list[int]:
    """The seeds every trial trains."""
    return list(range(settings.trial_seeds))


def confirmation_seeds(count: int) -> list[int]:
    """``count`` seeds for the confirmation runs, disjoint from every trial's."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return list(range(CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + count))


def shown_seeds(seeds: Sequence[int]) -> str:
    """``"0"``, ``"1000-1002"`` (consecutive seeds), or ``"none"``."""
    if not seeds:
        return "none"
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
