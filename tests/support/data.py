"""What the tests and benchmarks send: initial parameters, datasets and job bodies."""

from typing import Any

import numpy as np

# Initial parameters for runs compared with tests/reference.py's plain loop.
INIT = {"w11": 0.7, "w12": -1.1, "b11": 0.2, "b12": 0.4, "w21": 0.9, "w22": -0.6, "b2": 0.1}

# A job that is valid and quick: four points, batches of two.
SMALL_JOB: dict[str, Any] = {
    "dataset": {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]},
    "hyperparameters": {"batch_size": 2},
}

SECONDS_OF_TRAINING = {"learning_rate": 0.001, "batch_size": 1, "epochs": 600}  # on 200,000 points


def sine_points(n: int, seed: int | np.random.Generator = 0, noise: float = 0.1) -> dict[str, list[float]]:
    """n points of sin(x) on [-3, 3], plus normal noise of that scale when noise is not 0."""
    rng = np.random.default_rng(seed)  # a Generator is used as it is
    x = rng.uniform(-3, 3, n)
    y = np.sin(x) + noise * rng.standard_normal(n) if noise else np.sin(x)
    return {"x": x.tolist(), "y": y.tolist()}


def tiny_job(n: int, seed: int | np.random.Generator, **hyperparameters: Any) -> dict[str, Any]:
    """A tiny job's body: n points of sin(x), no noise, sent inline with the job."""
    return {"dataset": sine_points(n, seed, noise=0), "hyperparameters": hyperparameters}


# A float64 run in the stored order from INIT: what tests compare with tests.reference.plain_train.
PLAIN_LOOP_HP = {
    "learning_rate": 0.3,
    "batch_size": 32,
    "epochs": 5,
    "shuffle": False,
    "initial_parameters": INIT,
    "dtype": "float64",
}
