"""Successive halving in the fleet engine: who goes on at each rung, and every trial a job."""

import dataclasses

import numpy as np
import pytest

from model import EarlyStopping, TrainConfig, train, train_fleet
from model.config import Dtype
from model.halving import Halving, bracket_sizes


def _data(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, n)
    return x, np.sin(x) + rng.normal(0, 0.1, n)


def _configs(dtype: Dtype, count: int = 27) -> list[TrainConfig]:
    rng = np.random.default_rng(1)
    return [
        TrainConfig(
            learning_rate=float(np.exp(rng.uniform(np.log(0.01), np.log(3.0)))),
            batch_size=int(rng.integers(4, 33)),
            epochs=27,
            seed=k % 5,
            dtype=dtype,
            validation_fraction=0.2,
            # Some trials end before a rung: they never reach it and are not ranked.
            early_stopping=EarlyStopping(2, 0.05) if k % 9 == 4 else None,
        )
        for k in range(count)
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_trial_equals_the_job_with_its_rung_as_epochs(dtype: Dtype) -> None:
    x, y = _data()
    configs = _configs(dtype)
    halving = Halving(min_epochs=3, reduction_factor=3)
    trained = train_fleet(x, y, configs, halving=halving)
    for config, trial in zip(configs, trained, strict=True):
        alone = train(x, y, dataclasses.replace(config, epochs=trial.epochs_completed))
        assert trial.parameters == alone.parameters  # the same compiled code, continued: bit for bit
        assert trial.loss_history == alone.loss_history
        assert trial.validation_loss_history == alone.validation_loss_history
        assert trial.stopped_early == alone.stopped_early
        assert trial.pruned == (trial.epochs_completed in (3, 9) and not trial.stopped_early)


def test_the_best_third_of_those_that_reached_a_rung_go_on() -> None:
    x, y = _data()
    configs = [dataclasses.replace(c, early_stopping=None) for c in _configs("float64")]
    trained = train_fleet(x, y, configs, halving=Halving(min_epochs=3, reduction_factor=3))
    assert [sum(t.epochs_completed == e for t in trained) for e in (3, 9, 27)] == [18, 6, 3]
    for rung, kept in ((3, 9), (9, 3)):
        reached = [(t.validation_loss_history, k) for k, t in enumerate(trained) if t.epochs_completed >= rung]
        assert all(history is not None for history, _ in reached)
        at_rung = [(history[rung - 1], k) for history, k in reached if history is not None]
        assert {k for _, k in sorted(at_rung)[:kept]} == {k for k, t in enumerate(trained) if t.epochs_completed > rung}
    assert not any(t.pruned for t in trained if t.epochs_completed == 27)


def test_ties_break_by_trial_index() -> None:
    x, y = _data()
    same = TrainConfig(learning_rate=0.3, batch_size=8, epochs=8, seed=2, validation_fraction=0.2)
    trained = train_fleet(x, y, [same] * 8, halving=Halving(min_epochs=2, reduction_factor=2))
    assert [t.epochs_completed for t in trained] == [8, 8, 4, 4, 2, 2, 2, 2]


def test_rungs_and_plans() -> None:
    assert Halving(9, 3).rungs(729) == [9, 27, 81, 243, 729]
    assert Halving(9, 3, bracket=2).rungs(729) == [81, 243, 729]
    assert Halving(4, 4).rungs(100) == [4, 16, 64, 100]
    assert Halving(3, 3).planned_epochs(27, 27) == 27 * 3 + 9 * 6 + 3 * 18
    assert bracket_sizes(100, 1, 3) == [100]
    sizes = bracket_sizes(100, 3, 3)
    assert sum(sizes) == 100 and sizes[0] > sizes[1] > sizes[2]
