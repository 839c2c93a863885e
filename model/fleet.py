"""A fleet: the arrays of K trainings of one dataset. A single job is a fleet of one.

Everything random is drawn here, on the CPU, before any engine runs, so every engine and
device starts a trial from the same numbers:
- the validation split depends only on n and validation_fraction (one split for all the
  trials of a sweep, and for every seed of a job);
- each trial's seed draws, from numpy's PCG64 generator, its initial parameters (replaced by
  initial_parameters where given, after the draw, so a seed keeps its batch order) and then
  the 64-bit key of its batch order (order.py).
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model import kernels
from model.config import PARAMETER_NAMES, TrainConfig, TrainingInputError, TrainResult

# The split's own generator: fixed, so the held-out points do not move with a trial's seed.
_SPLIT_SEED = 0x5EED


def initial_parameters(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """PyTorch's nn.Linear defaults: U(-1, 1) for layer 1 (fan-in 1), U(-1/sqrt 2, 1/sqrt 2) for layer 2."""
    bound = 1.0 / math.sqrt(2.0)
    return np.concatenate([rng.uniform(-1.0, 1.0, 4), rng.uniform(-bound, bound, 3)])


def as_points(values: Sequence[float] | npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """values as a flat float64 array of finite numbers, or TrainingInputError."""
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


def training_points(n: int, validation_fraction: float) -> int:
    """How many of n points train (the others validate)."""
    return n - round(n * validation_fraction)


def split_sizes(n: int, validation_fraction: float, batch_size: int) -> tuple[int, int]:
    """(training points, validation points) of n; TrainingInputError if batch_size does not fit."""
    n_val = n - training_points(n, validation_fraction)
    if validation_fraction > 0 and n_val == 0:
        message = f"validation_fraction {validation_fraction} of {n} points is no point"
        raise TrainingInputError(message, "validation_fraction")
    if batch_size > n - n_val:
        message = f"batch_size {batch_size} is larger than the {n - n_val} training points"
        raise TrainingInputError(message, "batch_size")
    return n - n_val, n_val


def check_config(config: TrainConfig) -> None:
    """TrainingInputError naming the field when config cannot be trained (on any data)."""
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise TrainingInputError("learning_rate must be a finite number > 0", "learning_rate")
    if config.batch_size < 1:
        raise TrainingInputError("batch_size must be >= 1", "batch_size")
    if config.epochs < 1:
        raise TrainingInputError("epochs must be >= 1", "epochs")
    if not 0 <= config.seed < 2**63:
        raise TrainingInputError("seed must be in [0, 2**63)", "seed")
    if not 0.0 <= config.validation_fraction < 0.5:
        raise TrainingInputError("validation_fraction must be in [0, 0.5)", "validation_fraction")
    if config.dtype not in ("float32", "float64"):
        raise TrainingInputError("dtype must be float32 or float64", "dtype")
    if config.device not in ("auto", "cpu", "cuda"):
        raise TrainingInputError("device must be auto, cpu or cuda", "device")
    stopping = config.early_stopping
    if stopping is not None and (stopping.patience < 1 or not 0 <= stopping.min_delta < math.inf):
        message = "early_stopping needs patience >= 1 and a finite min_delta >= 0"
        raise TrainingInputError(message, "early_stopping")
    init = config.initial_parameters
    if init is not None:
        if set(init) != set(PARAMETER_NAMES):
            message = f"initial_parameters must name exactly {', '.join(PARAMETER_NAMES)}"
            raise TrainingInputError(message, "initial_parameters")
        if not all(math.isfinite(init[k]) for k in PARAMETER_NAMES):
            raise TrainingInputError("initial_parameters must be finite numbers", "initial_parameters")


def _check_each(configs: Sequence[TrainConfig], check: Callable[[TrainConfig], object]) -> None:
    """check(config) for each; in a fleet of several, the error names the trial."""
    for k, config in enumerate(configs):
        try:
            check(config)
        except TrainingInputError as exc:
            if len(configs) == 1:
                raise
            raise exc.in_trial(k) from exc


class Fleet:
    """K trainings of one dataset: the data once, and per trial k its row of every array.

    The engines (kernels.run_trials, gpu.GpuEngine) read the hyperparameter arrays and
    advance theta, last_good, state, losses and val_losses in place, whole epochs at a time."""

    def __init__(
        self, x: Sequence[float] | npt.ArrayLike, y: Sequence[float] | npt.ArrayLike, configs: Sequence[TrainConfig]
    ) -> None:
        if not configs:
            raise TrainingInputError("a fleet needs at least one training")
        first = configs[0]

        def check(config: TrainConfig) -> None:
            check_config(config)
            for shared in ("dtype", "device", "validation_fraction"):
                if getattr(config, shared) != getattr(first, shared):
                    raise TrainingInputError(f"{shared} must be the same for every trial", shared)

        _check_each(configs, check)
        x64, y64 = as_points(x, "x"), as_points(y, "y")
        n = x64.shape[0]
        if y64.shape[0] != n:
            raise TrainingInputError(f"x and y differ in length ({n} and {y64.shape[0]})")
        if n == 0:
            raise TrainingInputError("the dataset has no points")
        _check_each(configs, lambda config: split_sizes(n, config.validation_fraction, config.batch_size))
        n_val = split_sizes(n, first.validation_fraction, first.batch_size)[1]

        dtype = np.dtype(first.dtype)
        self.configs = list(configs)
        self.dtype, self.device = first.dtype, first.device
        if n_val:
            is_val = np.zeros(n, dtype=bool)
            is_val[np.random.default_rng(_SPLIT_SEED).permutation(n)[:n_val]] = True
            self.x, self.y = x64[~is_val].astype(dtype), y64[~is_val].astype(dtype)
            self.xv, self.yv = x64[is_val].astype(dtype), y64[is_val].astype(dtype)
        else:  # no split to draw (a generator and a permutation are most of a tiny job's set-up)
            self.x, self.y = x64.astype(dtype), y64.astype(dtype)
            self.xv, self.yv = np.empty(0, dtype), np.empty(0, dtype)

        k_count, max_epochs = len(configs), max(c.epochs for c in configs)
        self.theta = np.empty((k_count, 7), dtype=dtype)
        self.order_seed = np.empty(k_count, dtype=np.uint64)
        for k, config in enumerate(configs):
            rng = np.random.default_rng(config.seed)
            theta0 = initial_parameters(rng)
            if config.initial_parameters is not None:
                theta0 = np.array([config.initial_parameters[p] for p in PARAMETER_NAMES])
            self.theta[k] = theta0
            self.order_seed[k] = rng.integers(2**63)
        self.last_good = self.theta.copy()
        self.state = np.zeros((k_count, kernels.STATE_SIZE))
        self.state[:, kernels.BEST] = math.inf
        self.pruned = np.zeros(k_count, dtype=bool)  # ended at a rung of successive halving (halving.py)
        self.losses = np.zeros((k_count, max_epochs))
        self.val_losses = np.zeros((k_count, max_epochs))

        def column(values: list[Any], kind: type) -> npt.NDArray[Any]:
            return np.array(values, dtype=kind)

        self.lr = column([c.learning_rate for c in configs], np.float64)
        self.batch_size = column([c.batch_size for c in configs], np.int64)
        self.epochs = column([c.epochs for c in configs], np.int64)
        self.shuffle = column([c.shuffle for c in configs], np.bool_)
        self.drop_last = column([c.drop_last for c in configs], np.bool_)
        self.patience = column([c.early_stopping.patience if c.early_stopping else 0 for c in configs], np.int64)
        self.min_delta = column([c.early_stopping.min_delta if c.early_stopping else 0.0 for c in configs], np.float64)

        self.initial_loss = np.array([kernels.mse(self.x, self.y, t) for t in self.theta])
        self.state[~np.isfinite(self.initial_loss), kernels.STATUS] = kernels.DIVERGED

    def kernel_args(self) -> tuple[npt.NDArray[Any], ...]:
        """The arrays of kernels.run_trials, in its order (after the trial indices)."""
        return (
            *(self.x, self.y, self.xv, self.yv, self.theta, self.last_good, self.state, self.losses, self.val_losses),
            *(self.lr, self.batch_size, self.epochs, self.shuffle, self.drop_last, self.patience, self.min_delta),
            self.order_seed,
        )

    def __len__(self) -> int:
        return len(self.configs)

    def running(self) -> npt.NDArray[np.int64]:
        """The indices of the trials still training."""
        return np.flatnonzero(self.state[:, kernels.STATUS] == kernels.RUNNING)

    def epochs_completed(self) -> npt.NDArray[np.int64]:
        return self.state[:, kernels.EPOCH].astype(np.int64)

    def parameters(self, k: int) -> dict[str, float]:
        """Trial k's parameters as they stand, by name."""
        return dict(zip(PARAMETER_NAMES, self.theta[k].tolist(), strict=True))

    def result(self, k: int, *, seconds: float, device: str, stopped: bool) -> TrainResult:
        """Trial k's result as it stands (partial while it runs)."""
        epochs = int(self.state[k, kernels.EPOCH])
        status = int(self.state[k, kernels.STATUS])
        initial = float(self.initial_loss[k])
        initial_or_none = initial if math.isfinite(initial) else None
        history = self.losses[k, :epochs].tolist()
        return TrainResult(
            parameters=self.parameters(k),
            initial_loss=initial_or_none,
            loss_history=history,
            validation_loss_history=self.val_losses[k, :epochs].tolist() if self.xv.shape[0] else None,
            final_loss=history[-1] if history else initial_or_none,
            epochs_completed=epochs,
            stopped_early=status == kernels.STOPPED_EARLY,
            training_seconds=seconds,
            diverged=status == kernels.DIVERGED,
            stopped=stopped and status == kernels.RUNNING,
            device=device,
            pruned=bool(self.pruned[k]),
        )
