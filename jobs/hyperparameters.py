"""Hyperparameters as stored (plain JSON): the engine's configuration from them, and a sweep's trials.

A job's and a trial's hyperparameters are the same resolved dict (every field of
model.TrainConfig), so a trial is exactly the job it would be alone.
"""

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

import model
from model.halving import Halving, bracket_sizes

# What a sweep may vary; dtype, device and validation_fraction are the sweep's (one split, one engine call).
SWEEPABLE = (
    "learning_rate",
    "batch_size",
    "epochs",
    "seed",
    "shuffle",
    "drop_last",
    "initial_parameters",
    "early_stopping",
)
# What a random sweep can draw from a {"min", "max", "log"} range (the rest from a NAME_values list).
# (Seeds come from seed_values: "seed" itself is the draws' own seed.)
RANGES = {"learning_rate": float, "batch_size": int, "epochs": int}


def config_from(hyperparameters: dict[str, Any]) -> model.TrainConfig:
    """The engine's configuration from resolved hyperparameters."""
    hp = dict(hyperparameters)
    stopping = hp.pop("early_stopping", None)
    return model.TrainConfig(**hp, early_stopping=model.EarlyStopping(**stopping) if stopping else None)


def default_objective(base: dict[str, Any]) -> str:
    """The validation loss where there is a split, else the training loss."""
    return "final_validation_loss" if base["validation_fraction"] > 0 else "final_loss"


def trials(grid: dict[str, list[Any]] | None, random: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each trial's varied values, in trial-index order: the grid's product or the random draws."""
    return list(grid_trials(grid) if grid is not None else random_trials(random or {}))


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(values) for values in grid.values())


def grid_trials(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """The Cartesian product, keys in the given order, the last varying fastest."""
    for combination in itertools.product(*grid.values()):
        yield dict(zip(grid, combination, strict=True))


def random_trials(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """spec["trials"] draws from spec["seed"]: per trial, each key in the given order draws from
    its range (floats uniform, or log-uniform with "log"; integers uniform, both ends included)
    or uniformly from its NAME_values list."""
    rng = np.random.default_rng(spec["seed"])
    draws = {k: v for k, v in spec.items() if k not in ("trials", "seed")}
    for _ in range(spec["trials"]):
        trial: dict[str, Any] = {}
        for key, how in draws.items():
            if key.endswith("_values"):
                trial[key.removesuffix("_values")] = how[int(rng.integers(len(how)))]
            elif RANGES[key] is int:
                trial[key] = int(rng.integers(int(how["min"]), int(how["max"]), endpoint=True))
            elif how.get("log"):
                trial[key] = float(math.exp(rng.uniform(math.log(how["min"]), math.log(how["max"]))))
            else:
                trial[key] = float(rng.uniform(how["min"], how["max"]))
        yield trial


def brackets(halving: dict[str, Any], trials: int) -> list[tuple[int, int, int]]:
    """A halving sweep's brackets (b, lo, hi) that have trials: consecutive trial ranges [lo, hi)
    in bracket order. Each is
    one chunk, trained in one engine call: a rung ranks all the trials of its bracket at once, so
    which are pruned depends on the trials alone (not on chunking, workers or re-runs)."""
    sizes = bracket_sizes(trials, halving["brackets"], halving["reduction_factor"])
    ends = list(itertools.accumulate(sizes))
    return [(b, hi - size, hi) for b, (size, hi) in enumerate(zip(sizes, ends, strict=True)) if size]


def halving_of(halving: dict[str, Any], objective: str, bracket: int) -> Halving:
    """The engine's successive halving of a sweep's bracket."""
    return Halving(
        min_epochs=halving["min_epochs"],
        reduction_factor=halving["reduction_factor"],
        bracket=bracket,
        validation=objective == "final_validation_loss",
    )


def bracket_of(halving: dict[str, Any], trials: int, index: int) -> int:
    """The bracket of a halving sweep's trial index (a sweep of a grid or random draws)."""
    return next(b for b, lo, hi in brackets(halving, trials) if lo <= index < hi)


def rung_reached(
    halving: dict[str, Any], objective: str, bracket: int, epochs: int, epochs_completed: int
) -> int | None:
    """The last rung of its bracket a trial of epochs reached (None before the first)."""
    rungs = halving_of(halving, objective, bracket).rungs(epochs)
    return max((r for r in rungs if r <= epochs_completed), default=None)
