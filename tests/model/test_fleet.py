"""The fleet engine: K trainings in one call, each equal to the single job with its hyperparameters."""

import numpy as np
import pytest

from model import EarlyStopping, TrainConfig, TrainingInputError, train, train_fleet
from model.config import Dtype
from model.order import permutation


def _data(n: int = 97) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, n)
    return x, np.sin(x) + rng.normal(0, 0.1, n)


def _mixed(dtype: Dtype) -> list[TrainConfig]:
    init = {"w11": 1.0, "w12": -1.0, "b11": 0.5, "b12": -0.5, "w21": 0.3, "w22": 0.2, "b2": 0.0}
    return [
        TrainConfig(learning_rate=0.1, batch_size=8, epochs=30, seed=1, dtype=dtype),
        TrainConfig(learning_rate=0.5, batch_size=10, epochs=12, seed=2, drop_last=True, dtype=dtype),
        TrainConfig(learning_rate=0.05, batch_size=97, epochs=25, seed=3, shuffle=False, dtype=dtype),
        TrainConfig(learning_rate=0.2, batch_size=1, epochs=5, initial_parameters=init, dtype=dtype),
        TrainConfig(learning_rate=1.0, batch_size=16, epochs=400, early_stopping=EarlyStopping(3, 1e-3), dtype=dtype),
        TrainConfig(learning_rate=1e6, batch_size=4, epochs=20, seed=5, dtype=dtype),  # diverges
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_trial_equals_its_single_job(dtype: Dtype) -> None:
    x, y = _data()
    configs = _mixed(dtype)
    fleet = train_fleet(x, y, configs)
    for config, trial in zip(configs, fleet, strict=True):
        alone = train(x, y, config)
        assert trial.parameters == alone.parameters  # the same compiled code: bit for bit
        assert trial.loss_history == alone.loss_history
        assert (trial.epochs_completed, trial.stopped_early, trial.diverged) == (
            alone.epochs_completed,
            alone.stopped_early,
            alone.diverged,
        )
    assert fleet[5].diverged and np.isfinite(list(fleet[5].parameters.values())).all()
    assert not any(t.diverged for t in fleet[:5])  # a diverged trial stops; the others go on
    assert fleet[4].stopped_early and fleet[4].epochs_completed < 400
    assert fleet[0].epochs_completed == 30 and fleet[1].epochs_completed == 12


def test_one_validation_split_for_every_seed() -> None:
    x, y = _data()
    configs = [TrainConfig(seed=s, validation_fraction=0.2, batch_size=8, epochs=3) for s in range(4)]
    fleet = train_fleet(x, y, configs)
    for config, trial in zip(configs, fleet, strict=True):
        assert trial.validation_loss_history == train(x, y, config).validation_loss_history
    # The same held-out points: the same initial parameters give the same validation loss.
    init = fleet[0].parameters
    a, b = (
        train(x, y, TrainConfig(seed=s, validation_fraction=0.2, initial_parameters=init, epochs=1)) for s in (0, 9)
    )
    assert a.validation_loss_history is not None and b.validation_loss_history is not None
    assert a.initial_loss == b.initial_loss


def test_progress_and_stop_work_for_the_whole_fleet() -> None:
    x, y = _data(2000)
    configs = [TrainConfig(batch_size=1, epochs=100_000, seed=s) for s in range(3)]
    seen: list[int] = []
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    fleet = train_fleet(
        x, y, configs, on_progress=lambda f: seen.append(int(f.epochs_completed().sum())), should_stop=stop
    )
    assert all(t.stopped and 0 < t.epochs_completed < 100_000 for t in fleet)
    assert seen == sorted(seen) and len(seen) == 3


def test_bad_trial_is_named() -> None:
    x, y = _data(10)
    with pytest.raises(TrainingInputError, match="trial 1: batch_size 11") as info:
        train_fleet(x, y, [TrainConfig(batch_size=2), TrainConfig(batch_size=11)])
    assert (info.value.trial, info.value.field) == (1, "batch_size")
    with pytest.raises(TrainingInputError, match="trial 1: dtype must be the same"):
        train_fleet(x, y, [TrainConfig(batch_size=2), TrainConfig(batch_size=2, dtype="float64")])


@pytest.mark.parametrize("n", [1, 2, 3, 31, 32, 33, 1000])
def test_batch_order_is_a_permutation_that_changes_each_epoch(n: int) -> None:
    orders = [permutation(n, np.uint64(42), e) for e in range(5)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(n))
    if n > 3:
        assert len({tuple(o.tolist()) for o in orders}) == 5


def test_batch_order_spreads_each_point_evenly() -> None:
    n, epochs = 50, 20_000
    first = np.bincount([permutation(n, np.uint64(7), e)[0] for e in range(epochs)], minlength=n)
    expected = epochs / n
    chi2 = float(((first - expected) ** 2 / expected).sum())
    assert chi2 < 100  # 49 degrees of freedom: 100 is far in the tail of a uniform draw
