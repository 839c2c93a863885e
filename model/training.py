"""train(): validate, draw everything random from one seeded CPU generator, run an engine.

The CPU engine is the compiled loop of kernels.py; the CUDA engine (cuda.py) runs the same
steps as torch operations. Both take the same resumable arguments, so this one driver gives
them progress callbacks, the stop check and the result.
"""

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model import kernels
from model.config import PARAMETER_NAMES, TrainConfig, TrainingInputError, TrainResult

OnEpoch = Callable[[int, float], None]  # (epochs completed, training loss)
ShouldStop = Callable[[], bool]

# Each engine call aims at this much wall time, so should_stop() is seen about 20 times a second.
_CALL_SECONDS = 0.05


def initial_parameters(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """PyTorch's nn.Linear defaults: U(-1, 1) for layer 1 (fan-in 1), U(-1/sqrt 2, 1/sqrt 2) for layer 2."""
    bound = 1.0 / math.sqrt(2.0)
    return np.concatenate([rng.uniform(-1.0, 1.0, 4), rng.uniform(-bound, bound, 3)])


def _as_points(values: Sequence[float] | npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingInputError(f"{name} must be a list of numbers") from exc
    if arr.ndim != 1:
        raise TrainingInputError(f"{name} must be a flat list of numbers")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise TrainingInputError(f"{name}[{bad[0]}] is not a finite number")
    return arr


def _check_config(config: TrainConfig) -> None:
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise TrainingInputError("learning_rate must be a finite number > 0")
    if config.batch_size < 1:
        raise TrainingInputError("batch_size must be >= 1")
    if config.epochs < 1:
        raise TrainingInputError("epochs must be >= 1")
    if not 0.0 <= config.validation_fraction < 0.5:
        raise TrainingInputError("validation_fraction must be in [0, 0.5)")
    if config.dtype not in ("float32", "float64"):
        raise TrainingInputError("dtype must be float32 or float64")
    if config.device not in ("auto", "cpu", "cuda"):
        raise TrainingInputError("device must be auto, cpu or cuda")
    stopping = config.early_stopping
    if stopping is not None and (stopping.patience < 1 or not 0 <= stopping.min_delta < math.inf):
        raise TrainingInputError("early_stopping needs patience >= 1 and a finite min_delta >= 0")
    init = config.initial_parameters
    if init is not None:
        if set(init) != set(PARAMETER_NAMES):
            raise TrainingInputError(f"initial_parameters must name exactly {', '.join(PARAMETER_NAMES)}")
        if not all(math.isfinite(init[k]) for k in PARAMETER_NAMES):
            raise TrainingInputError("initial_parameters must be finite numbers")


@functools.cache
def cuda_available() -> bool:
    """True when torch sees a CUDA device (asked once per process)."""
    import torch  # noqa: PLC0415  (torch is only needed for CUDA; CPU runs do not pay its import)

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """The device a run would use: "cpu" or "cuda"; cuda where none is present is an error."""
    if device == "cuda" and not cuda_available():
        raise TrainingInputError("device cuda was requested but no CUDA device is available")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


def train(
    x: Sequence[float] | npt.ArrayLike,
    y: Sequence[float] | npt.ArrayLike,
    config: TrainConfig | None = None,
    *,
    on_epoch: OnEpoch | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainResult:
    """Train the 1-2-1 network on (x, y) by mini-batch gradient descent (model.md)."""
    config = config or TrainConfig()
    run = prepare(x, y, config)
    if resolve_device(config.device) == "cuda":
        from model.cuda import CudaEngine  # noqa: PLC0415  (imports torch)

        cuda = CudaEngine(run, "cuda")
        return run.drive(cuda.run_epochs, cuda.device_name, on_epoch, should_stop)
    return run.drive(run.run_epochs_cpu, "cpu", on_epoch, should_stop)


def split_sizes(n: int, validation_fraction: float, batch_size: int) -> tuple[int, int]:
    """(training points, validation points) of n; TrainingInputError if batch_size does not fit."""
    n_val = round(n * validation_fraction)
    if validation_fraction > 0 and n_val == 0:
        raise TrainingInputError(f"validation_fraction {validation_fraction} of {n} points is no point",
                                 "validation_fraction")  # fmt: skip
    if batch_size > n - n_val:
        raise TrainingInputError(
            f"batch_size {batch_size} is larger than the {n - n_val} training points", "batch_size"
        )
    return n - n_val, n_val


def prepare(x: Sequence[float] | npt.ArrayLike, y: Sequence[float] | npt.ArrayLike, config: TrainConfig) -> "Run":
    """Validate and lay out a run: data split and cast, initial parameters, batch-order seed."""
    _check_config(config)
    x64, y64 = _as_points(x, "x"), _as_points(y, "y")
    n = x64.shape[0]
    if y64.shape[0] != n:
        raise TrainingInputError(f"x and y differ in length ({n} and {y64.shape[0]})")
    if n == 0:
        raise TrainingInputError("the dataset has no points")

    # One generator, in a fixed order: init, split, then the seed of the batch-order stream.
    rng = np.random.default_rng(config.seed)
    theta0 = initial_parameters(rng)
    if config.initial_parameters is not None:
        theta0 = np.array([config.initial_parameters[k] for k in PARAMETER_NAMES])
    n_train, n_val = split_sizes(n, config.validation_fraction, config.batch_size)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:n_val]] = True
    order_seed = np.array([rng.integers(2**63)], dtype=np.uint64)

    dtype = np.dtype(config.dtype)
    return Run(
        x64[~is_val].astype(dtype),
        y64[~is_val].astype(dtype),
        x64[is_val].astype(dtype),
        y64[is_val].astype(dtype),
        theta0.astype(dtype),
        order_seed,
        config,
    )


class Run:
    """The arrays of one run, shared by both engines (they resume from state[EPOCH, OFFSET])."""

    def __init__(
        self,
        x: npt.NDArray[Any],
        y: npt.NDArray[Any],
        xv: npt.NDArray[Any],
        yv: npt.NDArray[Any],
        theta: npt.NDArray[Any],
        order_seed: npt.NDArray[np.uint64],
        config: TrainConfig,
    ) -> None:
        self.x, self.y, self.xv, self.yv = x, y, xv, yv
        self.config = config
        self.theta, self.last_good = theta, theta.copy()
        self.rng = order_seed
        # The points in batch order; without shuffling the stored order is the batch order.
        self.xs, self.ys = (x.copy(), y.copy()) if config.shuffle else (x, y)
        self.state = np.zeros(kernels.STATE_SIZE)
        self.state[kernels.BEST] = math.inf
        self.losses = np.zeros(config.epochs)
        self.val_losses = np.zeros(config.epochs)
        stopping = config.early_stopping
        self.patience = stopping.patience if stopping else 0
        self.min_delta = stopping.min_delta if stopping else 0.0

    def run_epochs_cpu(self, sample_budget: int) -> int:
        c = self.config
        return int(
            kernels.run_epochs(
                self.x,
                self.y,
                self.xv,
                self.yv,
                self.xs,
                self.ys,
                self.rng,
                self.theta,
                self.last_good,
                self.state,
                self.losses,
                self.val_losses,
                c.batch_size,
                c.learning_rate,
                c.shuffle,
                c.drop_last,
                c.epochs,
                self.patience,
                self.min_delta,
                sample_budget,
            )
        )

    def drive(
        self, engine: Callable[[int], int], device_name: str, on_epoch: OnEpoch | None, should_stop: ShouldStop | None
    ) -> TrainResult:
        started = time.perf_counter()
        initial = float(kernels.mse(self.x, self.y, self.theta))
        status, stopped, reported = kernels.RUNNING, False, 0
        budget = 1 << 16  # samples per engine call, adapted to _CALL_SECONDS below
        if not math.isfinite(initial):
            status = kernels.DIVERGED
        while status == kernels.RUNNING:
            if should_stop is not None and should_stop():
                stopped = True
                break
            t0 = time.perf_counter()
            status = engine(budget)
            elapsed = time.perf_counter() - t0
            # Grow at most 2x a call: one fast call must not make the next one overshoot.
            budget = int(min(budget * 2, max(budget * _CALL_SECONDS / max(elapsed, 1e-6), 1024)))
            done = int(self.state[kernels.EPOCH])
            if on_epoch is not None:
                for e in range(reported, done):
                    on_epoch(e + 1, float(self.losses[e]))
            reported = done
        epochs = int(self.state[kernels.EPOCH])
        history = [float(v) for v in self.losses[:epochs]]
        return TrainResult(
            parameters={k: float(v) for k, v in zip(PARAMETER_NAMES, self.theta, strict=True)},
            initial_loss=initial if math.isfinite(initial) else None,
            loss_history=history,
            validation_loss_history=[float(v) for v in self.val_losses[:epochs]] if self.xv.shape[0] else None,
            final_loss=history[-1] if history else (initial if math.isfinite(initial) else None),
            epochs_completed=epochs,
            stopped_early=status == kernels.STOPPED_EARLY,
            training_seconds=time.perf_counter() - started,
            diverged=status == kernels.DIVERGED,
            stopped=stopped,
            device=device_name,
        )


def predict(parameters: dict[str, float], x: Sequence[float] | npt.ArrayLike) -> list[float]:
    """The network's output for each x, in float64."""
    xs = _as_points(x, "x")
    w11, w12, b11, b12, w21, w22, b2 = (parameters[k] for k in PARAMETER_NAMES)
    with np.errstate(over="ignore"):
        u1 = 0.5 * (1.0 + np.tanh(0.5 * (w11 * xs + b11)))  # sigmoid without overflow
        u2 = 0.5 * (1.0 + np.tanh(0.5 * (w12 * xs + b12)))
    return [float(v) for v in w21 * u1 + w22 * u2 + b2]


def warm_up() -> None:
    """Compile (or load from the cache) the CPU kernels for both dtypes, so no job pays for it."""
    for dtype in ("float32", "float64"):
        for shuffle in (True, False):
            train(
                [0.0, 1.0, 2.0],
                [0.0, 1.0, 0.0],
                TrainConfig(
                    epochs=2, batch_size=2, dtype=dtype, shuffle=shuffle, device="cpu", validation_fraction=0.25
                ),
            )
