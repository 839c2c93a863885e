"""Request and response bodies of the HTTP API (../shared/spec/api.md)."""

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    """What clients send: no unknown fields, no coercion of strings or booleans, finite floats only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Points(Strict):
    x: Annotated[list[float], Field(min_length=1)]
    y: Annotated[list[float], Field(min_length=1)]

    @model_validator(mode="after")
    def _same_length(self) -> "Points":
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y differ in length ({len(self.x)} and {len(self.y)})")
        return self


class DatasetIn(Points):
    name: Name | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0, 2.0], "y": [0.2, 0.5, 0.8, 0.9],
                                                                "name": "toy"}]})  # fmt: skip


class Dataset(BaseModel):
    id: str
    name: str | None
    n_points: int
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    sha256: str
    created_at: datetime


class Parameters(Strict):
    """The seven parameters of the 1-2-1 network, by name."""

    w11: float
    w12: float
    b11: float
    b12: float
    w21: float
    w22: float
    b2: float


class EarlyStopping(Strict):
    patience: Annotated[int, Field(ge=1, le=1_000_000)]
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class Hyperparameters(Strict):
    learning_rate: Annotated[float, Field(gt=0)] = 0.1
    batch_size: Annotated[int, Field(ge=1)] = 32
    epochs: Annotated[int, Field(ge=1)] = 100
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    shuffle: bool = True
    drop_last: bool = False
    initial_parameters: Parameters | None = None
    validation_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    early_stopping: EarlyStopping | None = None
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class JobIn(Strict):
    dataset_id: str | None = None
    dataset: Points | None = None
    hyperparameters: Hyperparameters = Hyperparameters()
    max_runtime_seconds: Annotated[float, Field(gt=0)] | None = None
    name: Name | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"dataset": {"x": [-2.0, -1.0, 0.0, 1.0, 2.0], "y": [-0.9, -0.8, 0.0, 0.8, 0.9]},
                 "hyperparameters": {"learning_rate": 0.5, "batch_size": 2, "epochs": 200, "seed": 0}},
                {"dataset_id": "ds_0123456789abcdef01234567", "hyperparameters": {"epochs": 50}},
            ]
        }
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_dataset(self) -> "JobIn":
        if (self.dataset_id is None) == (self.dataset is None):
            raise ValueError("give exactly one of dataset_id or dataset")
        return self


class Progress(BaseModel):
    epochs_completed: int
    epochs: int
    last_loss: float | None


class Error(BaseModel):
    code: str  # diverged, timeout, worker_lost, internal, invalid_input, dataset_deleted
    message: str


class Result(BaseModel):
    parameters: dict[str, float]
    initial_loss: float | None
    loss_history: list[float]
    validation_loss_history: list[float] | None
    final_loss: float | None
    epochs_completed: int
    stopped_early: bool
    training_seconds: float


class JobSummary(BaseModel):
    """A job as listed: everything but the result."""

    id: str
    name: str | None
    status: Status
    dataset_id: str
    hyperparameters: dict[str, Any]  # all resolved, seed included
    max_runtime_seconds: float | None
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    device: str | None
    attempts: int
    error: Error | None


class Job(JobSummary):
    result: Result | None  # set when succeeded; the partial result of a cancelled, timed-out or diverged job


Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None


class PredictIn(Strict):
    x: Annotated[list[float], Field(min_length=1)]

    model_config = ConfigDict(json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0]}]})


class PredictOut(BaseModel):
    y: list[float | None]  # None where the output overflows a float


class ErrorOut(BaseModel):
    """An error other than a validation error: what went wrong, in words."""

    detail: str
