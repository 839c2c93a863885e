"""The 1-2-1 network and its training engines: numbers in, seven parameters and loss history out."""

from model.config import PARAMETER_NAMES, EarlyStopping, TrainConfig, TrainingInputError, TrainResult
from model.training import predict, train, warm_up

__all__ = [
    "PARAMETER_NAMES",
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "TrainingInputError",
    "predict",
    "train",
    "warm_up",
]
