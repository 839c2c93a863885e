"""A search's asks (jobs/search.py), on an objective of plain arithmetic: within its ranges, the
same for the same stored trials however they were reached, and led by what it was told."""

import math
from typing import Any

from jobs import search
from jobs.status import Status

SPEC: dict[str, Any] = {
    "sampler": "tpe",
    "trials": 40,
    "seed": 3,
    "batch": 8,
    "learning_rate": {"min": 1e-4, "max": 1.0, "log": True},
    "batch_size": {"min": 1, "max": 8},
    "early_stopping_values": [None, {"patience": 2, "min_delta": 0.0}],
}


def loss(hp: dict[str, Any]) -> float:
    """Smallest at learning_rate 0.01 and batch_size 4."""
    return float((math.log10(hp["learning_rate"]) + 2) ** 2 + (hp["batch_size"] - 4) ** 2 / 16)


def outcome(hp: dict[str, Any], k: int) -> search.Told:
    """Every fourth trial pruned at epoch 3 with its loss there, every seventh failed."""
    if k % 7 == 6:
        stored = {"status": Status.FAILED, "objective": None, "rung_objective": None, "result": None}
        return search.told({"hyperparameters": hp, **stored})
    pruned = k % 4 == 3
    return search.told(
        {
            "hyperparameters": hp,
            "status": Status.PRUNED if pruned else Status.SUCCEEDED,
            "objective": None if pruned else loss(hp),
            "rung_objective": loss(hp) + 1 if pruned else None,
            "result": {"epochs_completed": 3 if pruned else 9},
        }
    )


def searched(spec: dict[str, Any]) -> list[dict[str, Any]]:
    told: list[search.Told] = []
    for _ in search.batches(spec):
        told += [outcome(hp, len(told) + k) for k, hp in enumerate(search.ask(spec, told))]
    return [t.hyperparameters for t in told]


def test_asks_are_within_the_ranges_in_batches_of_the_given_size() -> None:
    asked = searched(SPEC)
    assert len(asked) == 40 and search.batches(SPEC) == [(lo, lo + 8) for lo in range(0, 40, 8)]
    assert all(1e-4 <= hp["learning_rate"] <= 1.0 and hp["batch_size"] in range(1, 9) for hp in asked)
    assert {str(hp["early_stopping"]) for hp in asked} == {"None", "{'patience': 2, 'min_delta': 0.0}"}
    assert len({hp["learning_rate"] for hp in asked}) == 40  # a batch's asks differ (the constant liar)


def test_a_batch_depends_on_the_stored_trials_alone() -> None:
    whole = searched(SPEC)
    # Replayed from the stored trials, as a new attempt does: batch 3 again, after its first two.
    told = [outcome(hp, k) for k, hp in enumerate(whole[:24])]
    assert search.ask(SPEC, told) == whole[24:32]
    assert searched(SPEC) == whole
    assert searched({**SPEC, "seed": 4}) != whole


def test_what_is_told_leads_the_later_asks() -> None:
    asked = searched({**SPEC, "trials": 64})
    first, last = asked[:8], asked[-8:]  # the first batch is drawn at random: nothing was told yet
    assert sum(map(loss, last)) < sum(map(loss, first)) / 2


def test_a_batch_over_the_trials_is_one_batch_and_a_halving_search_takes_the_brackets_in_turn() -> None:
    assert search.batches({**SPEC, "trials": 5, "batch": 64}) == [(0, 5)]
    halving = {"min_epochs": 1, "reduction_factor": 3, "brackets": 2}
    assert [search.bracket(SPEC, halving, k) for k in (0, 7, 8, 15, 16)] == [0, 0, 1, 1, 0]
    # Bracket 0 of 8 trials over 9 epochs: 8 x 1 + 2 x 2 + 1 x 6; bracket 1: 8 x 3 + 2 x 6.
    assert search.planned_epochs({**SPEC, "trials": 16}, halving, "final_loss", 9) == 18 + 36
    assert search.planned_epochs({**SPEC, "trials": 16}, None, "final_loss", 9) == 16 * 9
