"""Request and response bodies of the HTTP API (docs/api.md; the live reference is /docs).

The answers, and the hyperparameters a request carries, are tinytrain/wire.py's (the client reads
them without the service installed); what only the server checks is here."""

import functools
import math
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from jobs.hyperparameters import RANGES, SWEEPABLE
from jobs.settings import get_settings
from tinytrain.wire import (
    Best,
    Dataset,
    Error,
    Halving,
    Hyperparameters,
    Job,
    JobProgressEvent,
    JobSummary,
    Page,
    Parameters,
    PredictOut,
    Progress,
    Result,
    ResultSummary,
    RunOut,
    Strict,
    Sweep,
    SweepProgress,
    SweepProgressEvent,
    SweepSummary,
    Trial,
    TrialCounts,
    TrialWithResult,
    Webhook,
    WebhookAttemptOut,
    WebhookDeliveryOut,
    WebhookEvent,
    WebhookWithSecret,
)

__all__ = [  # the answers' types too, which routes name schemas.Job and so on
    "Best",
    "Dataset",
    "DatasetIn",
    "Error",
    "Halving",
    "ErrorOut",
    "Health",
    "Hyperparameters",
    "ID_PATTERNS",
    "Job",
    "JobIn",
    "JobProgressEvent",
    "JobSummary",
    "NO_CONTROL_CHARACTERS",
    "Name",
    "Page",
    "Parameters",
    "Points",
    "PredictIn",
    "PredictOut",
    "Progress",
    "Random",
    "Range",
    "Ready",
    "Result",
    "ResultSummary",
    "RunIn",
    "RunOut",
    "Strict",
    "Sweep",
    "SweepIn",
    "SweepProgress",
    "SweepProgressEvent",
    "SweepSummary",
    "Trial",
    "TrialCounts",
    "TrialWithResult",
    "Webhook",
    "WebhookAttemptOut",
    "WebhookDeliveryOut",
    "WebhookEvent",
    "WebhookIn",
    "WebhookWithSecret",
    "Limits",
    "HyperparameterSpec",
]

# Printable text: a control character (a NUL byte above all, which PostgreSQL cannot store) is a 422.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
# Every id is its type's prefix and 24 hex digits (jobs.tables.new_id); an id of any other
# shape names nothing and is answered 404 without a query (api/deps.py).
ID_PATTERNS = {prefix: rf"^{prefix}_[0-9a-f]{{24}}$" for prefix in ("job", "ds", "sw", "wh", "msg")}


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


class PredictIn(Strict):
    x: Annotated[list[float], Field(min_length=1)]

    model_config = ConfigDict(json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0]}]})


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
    try:  # all values in one call, not a model per value
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


class Search(Random):
    """A model-based search: trials asked of Optuna's TPESampler, batch at a time (each batch one
    engine call), from ranges as a random sweep's; seed seeds the sampler (jobs/search.py)."""

    sampler: Literal["tpe"]
    # A batch over trials is one batch of them all.
    batch: Annotated[int, Field(ge=1)] = 64

    @model_validator(mode="after")
    def _searches_something(self) -> Self:
        if not self.model_extra:
            raise ValueError("give at least one range (NAME: {min, max, log}) or NAME_values to search")
        return self


Objective = Literal["final_loss", "final_validation_loss"]


class SweepIn(RunIn):
    grid: dict[str, list[Any]] | None = None
    random: Random | None = None
    search: Search | None = None
    halving: Halving | None = None
    objective: Objective | None = None

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
        if [self.grid, self.random, self.search].count(None) != 2:
            raise ValueError("give exactly one of grid, random or search")
        if self.grid is not None:
            self.grid = {key: _check_values(key, values) for key, values in self.grid.items()}
        return self


class Limits(BaseModel):
    """This service's limits on what one request may ask (its TINYTRAIN_MAX_* settings)."""

    max_points: int = Field(description="Most points in one dataset.")
    max_epochs: int = Field(description="Most epochs of one job or trial.")
    max_work: int = Field(description="Most points x epochs of one job (of a sweep: summed over its trials).")
    max_trials: int = Field(description="Most trials of one sweep.")
    max_body_bytes: int = Field(description="Largest request body.")


class HyperparameterSpec(BaseModel):
    json_schema: dict[str, Any] = Field(description="The JSON Schema of a job's or sweep's hyperparameters.")
    halving: dict[str, Any] = Field(description="The JSON Schema of a sweep's `halving`.")
    sweepable: list[str] = Field(description="What a sweep's grid (or a random sweep's NAME_values) may vary.")
    ranges: dict[str, Literal["float", "int"]] = Field(
        description="What a random sweep may draw from a {min, max, log} range, and of which type."
    )
    objectives: list[str] = Field(description="What a sweep may minimise.")
    limits: Limits


class WebhookIn(Strict):
    url: Annotated[str, Field(min_length=1, max_length=2000, pattern=NO_CONTROL_CHARACTERS)]
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=6)]
    description: Name | None = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"url": "https://hooks.example.invalid/tt", "events": ["job.succeeded"]}]}
    )
