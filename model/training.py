"""The driver: train a fleet (or one job, a fleet of one) on the CPU or the GPU engine.

It chooses the device, calls the engine a slice of epochs at a time (about 50 ms a call, so
a stop is seen within a fraction of a second), reports progress and builds the results.
"""

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from model import kernels
from model.config import PARAMETER_NAMES, TrainConfig, TrainingInputError, TrainResult
from model.fleet import Fleet, as_points
from model.halving import Halving

if TYPE_CHECKING:
    from model.gpu import GpuEngine

OnEpoch = Callable[[int, float], None]  # (epochs completed, training loss)
OnProgress = Callable[[Fleet], None]  # after each engine call: the fleet's arrays as they stand
ShouldStop = Callable[[], bool]

# Each engine call aims at this much wall time, so should_stop() is seen about 20 times a second.
_CALL_SECONDS = 0.05
# auto picks the GPU for a fleet at least this large, or for batches at least this large: below
# both, one CPU core beats a kernel launch and the copies (docs/model.md, "Where a run trains").
GPU_MIN_TRIALS = 64
GPU_MIN_BATCH = 4096


@functools.cache
def cuda_available() -> bool:
    """True when torch sees a CUDA device (asked once per process)."""
    # Linux without NVIDIA's driver has no CUDA device: torch, seconds to import, is not asked.
    if sys.platform == "linux" and not os.path.exists("/proc/driver/nvidia"):
        return False
    import torch  # here, not at the top: CPU runs do not pay its import

    return bool(torch.cuda.is_available())


def resolve_device(device: str, trials: int = 1, min_batch: int = 1) -> str:
    """Where a run trains: "cpu" or "cuda"; cuda where none is present is an error, unless the
    GPU kernel runs in Triton's interpreter (TRITON_INTERPRET=1), which needs none."""
    if device == "cuda" and not cuda_available() and not _interpreted():
        raise TrainingInputError("device cuda was requested but no CUDA device is available", "device")
    if device == "auto":
        big = trials >= GPU_MIN_TRIALS or min_batch >= GPU_MIN_BATCH
        return "cuda" if big and cuda_available() else "cpu"
    return device


_CORES = len(os.sched_getaffinity(0))


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_CORES, thread_name_prefix="tinytrain-fleet")


class CpuEngine:
    """kernels.run_trials on every core: the running trials dealt round-robin to one thread each."""

    device_name = "cpu"

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def _run(self, trials: npt.NDArray[np.int64], epochs: int) -> None:
        run_trials: Callable[..., None] = kernels.run_trials
        run_trials(trials, *self.fleet.kernel_args(), epochs)

    def run(self, epochs: int) -> None:
        running = self.fleet.running()
        parts = min(len(running), _CORES)
        if parts <= 1:  # a single job trains in the caller's thread
            self._run(running, epochs)
            return
        for done in [
            _threads().submit(self._run, np.ascontiguousarray(running[i::parts]), epochs) for i in range(parts)
        ]:
            done.result()


def train_fleet(
    x: Sequence[float] | npt.ArrayLike,
    y: Sequence[float] | npt.ArrayLike,
    configs: Sequence[TrainConfig],
    *,
    on_progress: OnProgress | None = None,
    should_stop: ShouldStop | None = None,
    on_start: Callable[[str], None] | None = None,
    halving: Halving | None = None,
) -> list[TrainResult]:
    """Train one 1-2-1 network per config on (x, y) (docs/model.md); trial k's result equals
    train(x, y, configs[k]). dtype, device and validation_fraction must be the same for all.

    on_start(device) is called once the device is chosen, before the first epoch. With halving,
    the trials run rung by rung (model/halving.py) and those that do not go on end pruned."""
    started = time.perf_counter()
    fleet = Fleet(x, y, configs)
    device = resolve_device(fleet.device, len(fleet), int(fleet.batch_size.min()))
    rungs = halving.rungs(int(fleet.epochs.max())) if halving is not None else [int(fleet.epochs.max())]
    full_epochs = fleet.epochs.copy()
    np.minimum(full_epochs, rungs[0], out=fleet.epochs)
    engine = _engine(fleet, device)
    if on_start is not None:
        on_start(engine.device_name)
    stopped, epochs = False, 1
    for rung, following in zip(rungs, [*rungs[1:], None], strict=True):
        while fleet.running().size:
            if should_stop is not None and should_stop():
                stopped = True
                break
            t0 = time.perf_counter()
            engine.run(epochs)
            elapsed = time.perf_counter() - t0
            # Grow at most 2x a call: one fast call must not make the next one overshoot.
            epochs = max(1, int(min(epochs * 2, epochs * _CALL_SECONDS / max(elapsed, 1e-6))))
            if on_progress is not None:
                on_progress(fleet)
        if stopped or following is None or halving is None:
            break
        _next_rung(fleet, halving, rung, np.minimum(full_epochs, following))
        # A new engine reads the fleet's arrays as the rung left them (the GPU's copies too).
        engine = _engine(fleet, device)
    seconds = time.perf_counter() - started
    return [fleet.result(k, seconds=seconds, device=engine.device_name, stopped=stopped) for k in range(len(fleet))]


def _interpreted() -> bool:
    from model.gpu import interpreted  # here: it imports torch and triton

    return interpreted()


def _engine(fleet: Fleet, device: str) -> "CpuEngine | GpuEngine":
    if device == "cuda":
        from model.gpu import GpuEngine, interpreted

        # The interpreter runs the kernel on CPU tensors (slowly: small fleets, for checks).
        return GpuEngine(fleet, "cpu" if interpreted() else "cuda")
    return CpuEngine(fleet)


def _next_rung(fleet: Fleet, halving: Halving, rung: int, following: npt.NDArray[np.int64]) -> None:
    """Rank the trials that completed the rung; the survivors go on to their next epochs, the others are pruned."""
    status, done = fleet.state[:, kernels.STATUS], fleet.epochs_completed()
    reached = np.flatnonzero((status == kernels.COMPLETED) & (done == rung) & (following > rung))
    if not reached.size:
        return
    losses = fleet.val_losses if halving.validation and fleet.xv.shape[0] else fleet.losses
    going_on = halving.survivors(losses[:, rung - 1], reached)
    fleet.pruned[np.setdiff1d(reached, going_on)] = True
    fleet.epochs[going_on] = following[going_on]
    fleet.state[going_on, kernels.STATUS] = kernels.RUNNING


def train(
    x: Sequence[float] | npt.ArrayLike,
    y: Sequence[float] | npt.ArrayLike,
    config: TrainConfig | None = None,
    *,
    on_epoch: OnEpoch | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainResult:
    """Train the 1-2-1 network on (x, y) by mini-batch gradient descent: a fleet of one."""
    on_progress: OnProgress | None = None
    if on_epoch is not None:
        report, reported = on_epoch, 0

        def each_epoch(fleet: Fleet) -> None:
            nonlocal reported
            done = int(fleet.epochs_completed()[0])
            for e in range(reported, done):
                report(e + 1, float(fleet.losses[0, e]))
            reported = done

        on_progress = each_epoch
    return train_fleet(x, y, [config or TrainConfig()], on_progress=on_progress, should_stop=should_stop)[0]


def predict(parameters: dict[str, float], x: Sequence[float] | npt.ArrayLike) -> list[float]:
    """The network's output for each x, in float64."""
    xs = as_points(x, "x")
    w11, w12, b11, b12, w21, w22, b2 = (parameters[k] for k in PARAMETER_NAMES)
    with np.errstate(over="ignore"):
        u1 = 0.5 * (1.0 + np.tanh(0.5 * (w11 * xs + b11)))  # sigmoid without overflow
        u2 = 0.5 * (1.0 + np.tanh(0.5 * (w12 * xs + b12)))
    return [float(v) for v in w21 * u1 + w22 * u2 + b2]


def warm_up() -> None:
    """Compile (or load from the cache) the CPU kernels for both dtypes, so no job pays for it."""
    for dtype in ("float32", "float64"):
        train(
            [0.0, 1.0, 2.0],
            [0.0, 1.0, 0.0],
            TrainConfig(epochs=2, batch_size=2, dtype=dtype, device="cpu", validation_fraction=0.25),
        )
