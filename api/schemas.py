"""Request and response bodies of the HTTP API (docs/api.md; the live reference is /docs)."""

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from jobs.hyperparameters import RANGES, SWEEPABLE
from jobs.settings import get_settings
from jobs.status import Status
from model import TrainConfig
from model.config import Device, Dtype

# Printable text: a control character (a NUL byte above all, which PostgreSQL cannot store) is a 422.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
# Every id is its type's prefix and 24 hex digits (jobs.lifecycle.new_id); an id of any other
# shape names nothing and is answered 404 without a query (api/deps.py).
ID_PATTERNS = {prefix: rf"^{prefix}_[0-9a-f]{{24}}$" for prefix in ("job", "ds", "sw")}
DEFAULT = TrainConfig()


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

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0, 2.0], "y": [0.2, 0.5, 0.8, 0.9], "name": "toy"}]}
    )


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
    """How to train; the defaults are model.TrainConfig's."""

    learning_rate: Annotated[float, Field(gt=0)] = DEFAULT.learning_rate
    batch_size: Annotated[
        int | None,
        Field(
            ge=1,
            description=f"Points per mini-batch; not given: all the training points, at most {DEFAULT.batch_size}.",
        ),
    ] = None
    epochs: Annotated[int, Field(ge=1)] = DEFAULT.epochs
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = DEFAULT.seed
    shuffle: bool = DEFAULT.shuffle
    drop_last: bool = DEFAULT.drop_last
    initial_parameters: Parameters | None = None
    validation_fraction: Annotated[float, Field(ge=0, lt=0.5)] = DEFAULT.validation_fraction
    early_stopping: EarlyStopping | None = None
    dtype: Dtype = DEFAULT.dtype
    device: Device = DEFAULT.device


class ResolvedEarlyStopping(BaseModel):
    patience: int
    min_delta: float


class ResolvedHyperparameters(BaseModel):
    """The hyperparameters a run trains with: every field of Hyperparameters resolved, batch_size
    a number (the one given, or the one that "not given" chose), seed included."""

    learning_rate: float
    batch_size: int
    epochs: int
    seed: int
    shuffle: bool
    drop_last: bool
    initial_parameters: Parameters | None
    validation_fraction: float
    early_stopping: ResolvedEarlyStopping | None
    dtype: Dtype
    device: Device


@dataclass(frozen=True)
class SchemaOf:
    """Annotated metadata: the field's JSON schema is model's, whatever the field's Python type."""

    model: type[BaseModel]

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        model = self.model.__pydantic_core_schema__
        # By reference, not inlined: one component (one generated class), however many fields use it.
        assert model["type"] == "model" and "ref" in model, model["type"]
        return handler(core_schema.definitions_schema(core_schema.definition_reference_schema(model["ref"]), [model]))


def _resolved(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    return ResolvedHyperparameters.model_validate(hyperparameters).model_dump()


# Documented and checked as ResolvedHyperparameters, held as the plain dict the database stores: the
# code that reads a run's hyperparameters by name (the varied ones of a sweep) goes on doing so.
HyperparameterValues = Annotated[dict[str, Any], AfterValidator(_resolved), SchemaOf(ResolvedHyperparameters)]


class RunIn(Strict):
    """What a job and a sweep both ask: one dataset, stored or inline, and how to train on it."""

    # Of any other shape than ds_ and 24 hex digits it names no dataset (404); control characters are a 422.
    dataset_id: Annotated[str, Field(max_length=200, pattern=NO_CONTROL_CHARACTERS)] | None = None
    dataset: Points | None = None
    hyperparameters: Hyperparameters = Hyperparameters()
    max_runtime_seconds: Annotated[float, Field(gt=0)] | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _one_dataset(self) -> Self:
        if (self.dataset_id is None) == (self.dataset is None):
            raise ValueError("give exactly one of dataset_id or dataset")
        return self


class JobIn(RunIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dataset": {"x": [-2.0, -1.0, 0.0, 1.0, 2.0], "y": [-0.9, -0.8, 0.0, 0.8, 0.9]},
                    "hyperparameters": {"learning_rate": 0.5, "batch_size": 2, "epochs": 200, "seed": 0},
                },
                {"dataset_id": "ds_0123456789abcdef01234567", "hyperparameters": {"epochs": 50}},
            ]
        }
    )


class Progress(BaseModel):
    epochs_completed: int
    epochs: int
    last_loss: float | None


class Error(BaseModel):
    code: str  # diverged, timeout, worker_lost, internal, invalid_input, dataset_deleted
    message: str

    @classmethod
    def of(cls, code: str | None, message: str | None) -> "Error | None":
        """The error of a row's error_code and error_message columns, None without one."""
        return cls(code=code, message=message or "") if code else None


class ResultSummary(BaseModel):
    """A result without its loss histories (GET .../result has them)."""

    parameters: Parameters
    initial_loss: float | None
    final_loss: float | None
    epochs_completed: int
    stopped_early: bool
    training_seconds: float


class Result(ResultSummary):
    loss_history: list[float]  # [k]: the MSE over all training points after epoch k + 1 (or epochs[k])
    validation_loss_history: list[float] | None
    epochs: list[int] | None = None  # with start, stop or max_points: the epoch (from 1) of each entry


class RunOut(BaseModel):
    """What a job and a sweep both are."""

    id: str
    name: str | None
    status: Status
    dataset_id: str
    hyperparameters: HyperparameterValues  # a sweep's: the base
    max_runtime_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    device: str | None
    attempts: int
    error: Error | None


class JobSummary(RunOut):
    """A job as listed: everything but the result."""

    progress: Progress


class Job(JobSummary):
    result: ResultSummary | None  # set when succeeded; the partial result of a cancelled, timed-out or diverged job


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


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class Range(Strict):
    min: float
    max: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self


def _check_trials(count: int) -> None:
    """A sweep of count trials must be within TINYTRAIN_MAX_TRIALS: checked before its values are."""
    limit = get_settings().max_trials
    if count > limit:
        raise ValueError(f"{count} trials is over the limit of {limit}")


def _check_values(key: str, values: list[Any]) -> list[Any]:
    """Each value must be a valid Hyperparameters value of key; the values as a job resolves them.

    Resolved, so that a trial's hyperparameters are those of the job it equals: an early_stopping
    with its min_delta, initial_parameters (and a learning_rate) as floats."""
    if key not in SWEEPABLE:
        raise ValueError(f"{key} cannot be swept; one of {', '.join(SWEEPABLE)}")
    if not values:
        raise ValueError(f"{key}: give at least one value")
    adapter = _values_of(key)
    try:  # all values in one call: a value at a time cost 5 us each, 50 ms for a grid of 10,000
        resolved: list[Any] = adapter.dump_python(adapter.validate_python(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{key}: {first['msg']} ({values[int(first['loc'][0])]!r})") from None
    return resolved


@functools.cache
def _values_of(key: str) -> TypeAdapter[list[Any]]:
    """A list of values of the Hyperparameters field key, checked as the field checks one."""
    field = Hyperparameters.model_fields[key]
    values = list[Annotated[field.annotation, Field(), *field.metadata]]  # type: ignore[name-defined]
    return TypeAdapter(values, config=Hyperparameters.model_config)


class Random(Strict):
    """n trials drawn from seed: NAME: {min, max, log} for learning_rate (log-uniform with log),
    batch_size, epochs (uniform integers); NAME_values: [...] for any sweepable name."""

    trials: Annotated[int, Field(ge=1)]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    @field_validator("trials")
    @classmethod
    def _within_the_limit(cls, trials: int) -> int:
        _check_trials(trials)
        return trials

    @model_validator(mode="after")
    def _draws(self) -> Self:
        extra = self.model_extra or {}
        for key, how in extra.items():
            if key.endswith("_values"):
                if isinstance(how, list) and len(how) > get_settings().max_trials:
                    raise ValueError(f"{key}: at most {get_settings().max_trials} values (the trial limit)")
                values = _check_values(key.removesuffix("_values"), how if isinstance(how, list) else [])
                extra[key] = values  # resolved, as a grid's (the same key: the dict keeps its order)
                continue
            if key not in RANGES:
                raise ValueError(f"{key}: draw from a range one of {', '.join(RANGES)}, or give {key}_values")
            try:
                bounds = Range.model_validate(how)
            except ValidationError as exc:  # name the range: Range's own errors do not
                first = exc.errors()[0]
                where = "".join(f"{part}: " for part in first["loc"])
                raise ValueError(f"{key}: {where}{first['msg'].removeprefix('Value error, ')}") from None
            if bounds.log and RANGES[key] is int:
                raise ValueError(f"{key}: integers are drawn uniformly; log is for learning_rate")
            for bound in (bounds.min, bounds.max):
                value = int(bound) if RANGES[key] is int and bound == int(bound) else bound
                if RANGES[key] is int and value > 2**63 - 1:
                    # numpy draws integers as int64: a larger bound was a 500 at admission.
                    raise ValueError(f"{key}: a range bound is at most 2**63 - 1, not {bound}")
                _check_values(key, [value])
        return self


class SweepIn(RunIn):
    grid: dict[str, list[Any]] | None = None
    random: Random | None = None
    objective: Literal["final_loss", "final_validation_loss"] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dataset": {"x": [-2.0, -1.0, 0.0, 1.0, 2.0], "y": [-0.9, -0.8, 0.0, 0.8, 0.9]},
                    "hyperparameters": {"epochs": 200, "batch_size": 2},
                    "grid": {"learning_rate": [0.1, 0.5, 1.0], "seed": [0, 1]},
                },
                {
                    "dataset_id": "ds_0123456789abcdef01234567",
                    "random": {"trials": 20, "seed": 0, "learning_rate": {"min": 0.01, "max": 1.0, "log": True}},
                },
            ]
        }
    )

    @field_validator("grid", mode="before")
    @classmethod
    def _count_trials(cls, grid: Any) -> Any:
        """A grid over the trial limit is refused from its lists' lengths, before any value is checked."""
        if isinstance(grid, dict):
            _check_trials(math.prod(len(values) if isinstance(values, list) else 1 for values in grid.values()))
        return grid

    @model_validator(mode="after")
    def _grid_or_random(self) -> Self:
        if (self.grid is None) == (self.random is None):
            raise ValueError("give exactly one of grid or random")
        if self.grid is not None:
            self.grid = {key: _check_values(key, values) for key, values in self.grid.items()}
        return self


class TrialCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class SweepProgress(BaseModel):
    epochs_completed: int
    epochs: int


class Best(BaseModel):
    index: int
    hyperparameters: HyperparameterValues
    objective: float
    parameters: Parameters


class Sweep(RunOut):
    grid: dict[str, list[Any]] | None
    random: dict[str, Any] | None
    objective: str
    trials: TrialCounts
    progress: SweepProgress
    best: Best | None  # the trial with the smallest objective so far


class SweepSummary(BaseModel):
    """A sweep as listed: no counts, progress or best (GET the sweep for those)."""

    id: str
    name: str | None
    status: Status
    dataset_id: str
    hyperparameters: HyperparameterValues
    max_runtime_seconds: float | None
    objective: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: Error | None


class TrialBase(BaseModel):
    index: int
    hyperparameters: HyperparameterValues
    status: Status
    error: Error | None
    objective: float | None


class Trial(TrialBase):
    result: ResultSummary | None


class TrialWithResult(TrialBase):
    result: Result | None  # the whole Result: histories too


class JobProgressEvent(BaseModel):
    """A job's `progress` event: the loss-history entries of epochs start+1..epochs_completed."""

    epochs_completed: int
    epochs: int
    start: int
    loss: list[float]
    validation_loss: list[float] | None


class SweepProgressEvent(BaseModel):
    """A sweep's `progress` event: its trial counts and epochs summed over the trials."""

    trials: TrialCounts
    epochs_completed: int
    epochs: int
