"""What a training run is asked to do and what it gives back (the Result of docs/api.md)."""

from dataclasses import dataclass, field
from typing import Literal

# The seven parameters, always named and ordered like this (docs/model.md).
PARAMETER_NAMES = ("w11", "w12", "b11", "b12", "w21", "w22", "b2")

Dtype = Literal["float32", "float64"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class EarlyStopping:
    patience: int  # stop after this many epochs without improvement (>= 1)
    min_delta: float = 0.0  # a loss must drop by more than this to count as an improvement


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 0.1  # eta of the SGD step, > 0
    batch_size: int = 32  # points per mini-batch, 1..training points
    epochs: int = 100  # passes over the training points
    seed: int = 0  # fixes the initial parameters, the validation split and every batch order
    shuffle: bool = True  # a new permutation each epoch; off: the stored order
    drop_last: bool = False  # skip the epoch's last, smaller batch
    initial_parameters: dict[str, float] | None = None  # all seven by name; None: seeded init
    validation_fraction: float = 0.0  # share of points held out for the validation loss, [0, 0.5)
    early_stopping: EarlyStopping | None = None  # watches the validation loss, else the training loss
    dtype: Dtype = "float32"
    device: Device = "auto"  # auto: cuda where available


@dataclass(frozen=True)
class TrainResult:
    parameters: dict[str, float]  # after the last finite epoch
    initial_loss: float | None  # MSE over the training points before the first step; None if not finite
    loss_history: list[float]  # exact MSE over all training points after each epoch
    validation_loss_history: list[float] | None  # the same over the validation points, None without a split
    final_loss: float | None  # the last entry of loss_history (initial_loss if no epoch finished)
    epochs_completed: int
    stopped_early: bool
    training_seconds: float
    diverged: bool = False  # the loss became non-finite; parameters and history stop before it
    stopped: bool = False  # should_stop() asked the run to end before its epochs were done
    device: str = field(default="cpu")  # where it ran: "cpu" or "cuda:N"
    pruned: bool = False  # successive halving ended it at a rung (its epochs_completed)


class TrainingInputError(ValueError):
    """The data or the configuration cannot be trained; the message names the problem.

    field: the configuration field at fault, where there is one; trial: the index of the
    trial at fault in a fleet, where there is one."""

    def __init__(self, message: str, field: str | None = None, trial: int | None = None) -> None:
        super().__init__(message)
        self.field, self.trial = field, trial

    def in_trial(self, trial: int) -> "TrainingInputError":
        return TrainingInputError(f"trial {trial}: {self}", self.field, trial)
