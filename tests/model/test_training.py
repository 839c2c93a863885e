"""train(): the exact math, reproducibility, the hooks, divergence and bad input."""

import math
import time

import numpy as np
import pytest

from model import EarlyStopping, TrainConfig, TrainingInputError, predict, train
from model.fleet import Fleet
from tests.reference import NAMES, mse, plain_train

INIT = {"w11": 0.7, "w12": -1.1, "b11": 0.2, "b12": 0.4, "w21": 0.9, "w22": -0.6, "b2": 0.1}


def sine(n: int, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    return x, np.sin(x) + noise * rng.standard_normal(n)


@pytest.mark.parametrize("drop_last", [False, True])
def test_float64_run_matches_the_plain_loop(drop_last: bool) -> None:
    x, y = sine(203)  # 203 = 6 * 32 + 11: a final partial batch
    config = TrainConfig(
        learning_rate=0.3,
        batch_size=32,
        epochs=6,
        shuffle=False,
        drop_last=drop_last,
        initial_parameters=INIT,
        dtype="float64",
        device="cpu",
    )
    result = train(x, y, config)
    params, history = plain_train(list(x), list(y), INIT, 0.3, 32, 6, drop_last=drop_last)
    for k in NAMES:
        assert result.parameters[k] == pytest.approx(params[k], rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(result.loss_history, history, rtol=1e-10)
    assert result.final_loss == result.loss_history[-1]
    assert result.epochs_completed == 6 and not result.stopped_early and not result.diverged


def test_float32_run_is_close_to_the_float64_run() -> None:
    x, y = sine(500)
    r64 = train(x, y, TrainConfig(epochs=5, dtype="float64", device="cpu"))
    r32 = train(x, y, TrainConfig(epochs=5, dtype="float32", device="cpu"))
    for k in NAMES:
        assert r32.parameters[k] == pytest.approx(r64.parameters[k], abs=1e-4)


def test_same_seed_is_bit_identical_and_another_seed_differs() -> None:
    x, y = sine(1000)
    config = TrainConfig(epochs=5, validation_fraction=0.2, device="cpu")
    a, b = train(x, y, config), train(x, y, config)
    c = train(x, y, TrainConfig(epochs=5, validation_fraction=0.2, device="cpu", seed=1))
    assert (a.parameters, a.loss_history, a.validation_loss_history) == (
        b.parameters,
        b.loss_history,
        b.validation_loss_history,
    )
    assert a.parameters != c.parameters


def test_seeded_init_uses_pytorch_default_ranges() -> None:
    for seed in range(50):
        theta = Fleet([0.0, 1.0], [0.0, 1.0], [TrainConfig(seed=seed, batch_size=1)]).theta[0]
        assert np.all(np.abs(theta[:4]) <= 1.0) and np.all(np.abs(theta[4:]) <= 1 / math.sqrt(2))


def test_training_reaches_the_noise_floor_of_a_teacher_network() -> None:
    teacher = {"w11": 2.0, "w12": -1.5, "b11": 0.5, "b12": 1.0, "w21": 1.5, "w22": -2.0, "b2": 0.3}
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 4000)
    y = np.array(predict(teacher, x)) + 0.05 * rng.standard_normal(x.size)
    floor = mse(teacher, list(x), list(y))  # the teacher's own loss on these noisy points
    result = train(x, y, TrainConfig(learning_rate=0.1, batch_size=32, epochs=300, dtype="float64", device="cpu"))
    assert result.final_loss is not None and result.final_loss < 1.2 * floor < 0.01 * float(np.var(y))


def test_validation_split_and_histories() -> None:
    x, y = sine(100)
    result = train(x, y, TrainConfig(epochs=4, validation_fraction=0.25, batch_size=75, device="cpu"))
    assert result.validation_loss_history is not None and len(result.validation_loss_history) == 4
    assert len(result.loss_history) == 4
    with pytest.raises(TrainingInputError, match="batch_size 76 is larger than the 75 training points"):
        train(x, y, TrainConfig(validation_fraction=0.25, batch_size=76, device="cpu"))


def test_initial_loss_and_exact_epoch_loss() -> None:
    x, y = sine(64)
    result = train(
        x,
        y,
        TrainConfig(epochs=2, batch_size=64, shuffle=False, initial_parameters=INIT, dtype="float64", device="cpu"),
    )
    assert result.initial_loss == pytest.approx(mse(INIT, list(x), list(y)), rel=1e-12)
    assert result.final_loss == pytest.approx(mse(result.parameters, list(x), list(y)), rel=1e-12)


def test_early_stopping_watches_the_validation_loss() -> None:
    x, y = sine(400)
    stopping = EarlyStopping(patience=3, min_delta=1.0)
    result = train(x, y, TrainConfig(epochs=1000, validation_fraction=0.2, early_stopping=stopping, device="cpu"))
    # Nothing improves by 1.0, so the first epoch is the best and three more end the run.
    assert result.stopped_early and result.epochs_completed == 4


def test_progress_callback_sees_every_epoch() -> None:
    x, y = sine(300)
    seen: list[tuple[int, float]] = []
    result = train(x, y, TrainConfig(epochs=50, device="cpu"), on_epoch=lambda e, loss: seen.append((e, loss)))
    assert seen == list(enumerate(result.loss_history, start=1))


def test_stop_check_ends_a_long_run_promptly_with_a_partial_result() -> None:
    # Epochs short enough that each of the engine's calls holds several, so a stop is seen within
    # a call with room for a loaded machine (ten times the points made one epoch a whole call,
    # which a busy CI machine stretched past the bound).
    x, y = sine(200_000)
    started = time.monotonic()
    asked: list[float] = []

    def should_stop() -> bool:
        asked.append(time.monotonic())
        return time.monotonic() - started > 1.0

    result = train(x, y, TrainConfig(epochs=10_000, batch_size=1, device="cpu"), should_stop=should_stop)
    gaps = np.diff(asked)
    assert result.stopped and not result.diverged and result.epochs_completed < 10_000
    assert gaps.max() < 0.25, f"the stop check waited {gaps.max():.3f} s"
    assert all(math.isfinite(v) for v in result.parameters.values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_stops_with_the_last_finite_parameters(dtype: str) -> None:
    x, y = sine(200)
    y = y * 1e3
    epochs_seen: list[int] = []
    result = train(
        x,
        y,
        TrainConfig(learning_rate=1e6, epochs=100, dtype=dtype, device="cpu"),  # type: ignore[arg-type]
        on_epoch=lambda e, _: epochs_seen.append(e),
    )
    assert result.diverged and result.epochs_completed < 100
    values = [*result.parameters.values(), *result.loss_history]
    assert all(math.isfinite(v) for v in values)
    assert result.initial_loss is not None and math.isfinite(result.initial_loss)
    assert epochs_seen == list(range(1, result.epochs_completed + 1))


def test_extreme_inputs_train_without_overflow() -> None:
    x = np.array([1e30, -1e30, 0.0, 1.0])
    result = train(x, [0.0, 1.0, 0.5, 0.2], TrainConfig(epochs=3, batch_size=2, device="cpu"))
    assert not result.diverged and all(math.isfinite(v) for v in result.parameters.values())


@pytest.mark.parametrize(
    ("x", "y", "config", "message"),
    [
        ([1.0, 2.0], [1.0], TrainConfig(), "x and y differ in length"),
        ([], [], TrainConfig(), "no points"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=0), "batch_size must be >= 1"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=3), "batch_size 3 is larger than the 2 training points"),
        ([1.0, math.nan], [1.0, 2.0], TrainConfig(batch_size=1), r"x\[1\] is not a finite number"),
        ([1.0, 2.0], [math.inf, 2.0], TrainConfig(batch_size=1), r"y\[0\] is not a finite number"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, learning_rate=0.0), "learning_rate"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, learning_rate=-1.0), "learning_rate"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, learning_rate=math.nan), "learning_rate"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, epochs=0), "epochs"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, validation_fraction=0.5), "validation_fraction"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, initial_parameters={"w11": 1.0}), "initial_parameters"),
        ([1.0, 2.0], [1.0, 2.0], TrainConfig(batch_size=1, early_stopping=EarlyStopping(0)), "patience"),
    ],
)
def test_bad_input_names_the_problem(x: list[float], y: list[float], config: TrainConfig, message: str) -> None:
    with pytest.raises(TrainingInputError, match=message):
        train(x, y, config)
