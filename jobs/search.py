"""A sweep's model-based search: its trials asked of Optuna's TPESampler, a batch at a time.

`{"sampler": "tpe", "trials": n, "seed": s, "batch": k, <ranges as a random sweep's>}` is one
chunk of n trials whose run asks k of them, trains those in one engine call, stores their
outcomes, and asks the next k (worker/run.py). What batch j asks depends on the request and the
trials stored before it only: before every ask the study is rebuilt from those trials (in index
order, each with its stored hyperparameters and outcome) under a sampler seeded by (s, j). So a
run that starts again after a lost worker, from what was stored, asks what an uninterrupted one
asked: the same trials, in the same order, with the same results. The sampler's constant liar
keeps the k asks of one batch apart (each sees the batch's earlier asks as running).

With halving, batch j trains as bracket j % brackets (Hyperband's brackets taken in turn,
each batch one engine call); a trial it prunes is told as pruned with its objective at the rung
it reached as the intermediate value at that epoch, which TPE ranks by how far a trial got and
then by that value. A trial that failed or was cancelled is told as failed: TPE leaves it out.

A trial's row exists from admission (its hyperparameters the sweep's base until asked) and
takes its asked hyperparameters with its outcome, when its batch ends.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from jobs.hyperparameters import RANGES, halving_of
from jobs.status import Status

# Optuna logs every trial told at INFO: a search tells thousands.
optuna.logging.set_verbosity(optuna.logging.WARNING)

_NOT_RANGES = ("sampler", "trials", "seed", "batch")
_STATES = {Status.SUCCEEDED: TrialState.COMPLETE, Status.PRUNED: TrialState.PRUNED}


@dataclass(frozen=True)
class Told:
    """A stored trial as the study is told it."""

    hyperparameters: dict[str, Any]
    status: Status
    value: float | None  # its objective; a pruned trial's: at the rung it reached
    epochs: int  # the epochs it trained: a pruned trial's rung


def told(trial: Mapping[str, Any]) -> Told:
    """A trial as stored (its hyperparameters, status, objective, rung_objective and result) as told."""
    value = trial["objective"] if trial["objective"] is not None else trial["rung_objective"]
    epochs = trial["result"]["epochs_completed"] if trial["result"] else 0
    return Told(trial["hyperparameters"], Status(trial["status"]), value, epochs)


def ranges(search: dict[str, Any]) -> dict[str, Any]:
    """The search's ranges and NAME_values lists, in the given order."""
    return {key: how for key, how in search.items() if key not in _NOT_RANGES}


def corners(search: dict[str, Any]) -> list[dict[str, Any]]:
    """Varied values that reach every end of the ranges and every value listed: the lows, the
    highs, and the lows with each listed value in turn."""
    how = ranges(search)
    kind = {key: RANGES[key] for key in how if not key.endswith("_values")}
    ends = {key: (kind[key](how[key]["min"]), kind[key](how[key]["max"])) for key in kind}
    lists = {key.removesuffix("_values"): values for key, values in how.items() if key.endswith("_values")}
    lows = {**{key: pair[0] for key, pair in ends.items()}, **{key: values[0] for key, values in lists.items()}}
    highs = {**lows, **{key: pair[1] for key, pair in ends.items()}}
    return [lows, highs, *({**lows, key: value} for key, values in lists.items() for value in values[1:])]


def batches(search: dict[str, Any]) -> list[tuple[int, int]]:
    """Its batches' trial ranges [lo, hi), in the order they are asked."""
    n, k = search["trials"], search["batch"]
    return [(lo, min(lo + k, n)) for lo in range(0, n, k)]


def bracket(search: dict[str, Any], halving: dict[str, Any], index: int) -> int:
    """The halving bracket trial index trains in: its batch's."""
    return int(index // search["batch"] % halving["brackets"])


def longest(search: dict[str, Any], epochs: int) -> int:
    """The most epochs one of its trials may train: the epochs range's top, else the base's."""
    how = ranges(search)
    if "epochs" in how:
        return int(how["epochs"]["max"])
    return int(max(how.get("epochs_values", [epochs])))


def planned_epochs(search: dict[str, Any], halving: dict[str, Any] | None, objective: str, epochs: int) -> int:
    """The model-epochs of the search (its halving, if any) when no trial ends before its last
    epoch or rung: counted at admission, less what ended early as each batch ends."""
    if halving is None:
        return int(search["trials"]) * longest(search, epochs)
    return sum(
        halving_of(halving, objective, bracket(search, halving, lo)).planned_epochs(hi - lo, epochs)
        for lo, hi in batches(search)
    )


def _distributions(search: dict[str, Any]) -> dict[str, BaseDistribution]:
    """A distribution per range; a NAME_values list is a choice of its values' indices (a value
    may be a dict, which Optuna cannot hold)."""
    out: dict[str, BaseDistribution] = {}
    for key, how in ranges(search).items():
        if key.endswith("_values"):
            out[key] = CategoricalDistribution(list(range(len(how))))
        elif RANGES[key] is int:
            out[key] = IntDistribution(int(how["min"]), int(how["max"]))
        else:
            out[key] = FloatDistribution(how["min"], how["max"], log=bool(how.get("log")))
    return out


def _values(search: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's varied hyperparameters from the sampler's params."""
    how = ranges(search)
    return {
        key.removesuffix("_values"): how[key][value] if key.endswith("_values") else value
        for key, value in params.items()
    }


def _params(search: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The sampler's params of a stored trial (a NAME_values list: the first index of its value)."""
    return {
        key: how.index(hyperparameters[key.removesuffix("_values")])
        if key.endswith("_values")
        else hyperparameters[key]
        for key, how in ranges(search).items()
    }


def _frozen(search: dict[str, Any], told: Told, distributions: dict[str, BaseDistribution]) -> FrozenTrial:
    state = _STATES.get(told.status, TrialState.FAIL)
    params = _params(search, told.hyperparameters)
    if told.value is not None and state == TrialState.COMPLETE:
        return create_trial(params=params, distributions=distributions, value=told.value, state=state)
    if told.value is not None and state == TrialState.PRUNED:
        rung = {told.epochs: told.value}
        return create_trial(params=params, distributions=distributions, state=state, intermediate_values=rung)
    return create_trial(params=params, distributions=distributions, state=TrialState.FAIL)


def ask(search: dict[str, Any], told: list[Told]) -> list[dict[str, Any]]:
    """The varied hyperparameters of the batch after the told trials (the sweep's trials
    0, 1, ... in index order, every earlier batch whole)."""
    lo = len(told)
    hi = min(lo + search["batch"], search["trials"])
    seed = int(np.random.SeedSequence([search["seed"], lo // search["batch"]]).generate_state(1)[0])
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
    distributions = _distributions(search)
    study.add_trials([_frozen(search, t, distributions) for t in told])
    return [_values(search, study.ask(distributions).params) for _ in range(lo, hi)]
