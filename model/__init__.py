"""The 1-2-1 network and its training engines: numbers in, seven parameters and loss history out.

Layout, imports pointing down: config (what a run is asked and gives back), order (the batch
order), kernels (the compiled CPU engine), fleet (the arrays of K runs), gpu (the Triton
kernel), training (the driver)."""

from model.config import PARAMETER_NAMES, EarlyStopping, TrainConfig, TrainingInputError, TrainResult
from model.training import predict, train, train_fleet, warm_up

__all__ = [
    "PARAMETER_NAMES",
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "TrainingInputError",
    "predict",
    "train",
    "train_fleet",
    "warm_up",
]
