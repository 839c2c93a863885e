"""The HTTP API's types that a client reads and sends: statuses, hyperparameters, and every answer.

Only pydantic: the client (tinytrain.client) and the remote commands import this, with none of the
service's packages installed. The service builds on it: api/schemas.py adds what only the server
checks (the bodies of requests) and answers with these models, so both sides read one definition.
Nothing here imports the service's modules.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema


# The status of a job, a sweep, a chunk of a sweep's trials and a trial: one set of names.
class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a trial successive halving ended at a rung


ACTIVE = (Status.QUEUED, Status.RUNNING)

Dtype = Literal["float32", "float64"]
Device = Literal["auto", "cpu", "cuda"]  # auto: cuda where available

# The engine's defaults (model.TrainConfig), which the API and the command line document:
# tests/test_wire.py keeps the two equal. A batch_size not given is all the training points, at
# most DEFAULT_BATCH_SIZE.
DEFAULT_BATCH_SIZE = 32


class Strict(BaseModel):
    """What clients send: no unknown fields, no coercion of strings or booleans, finite floats only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


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

    learning_rate: Annotated[float, Field(gt=0)] = 0.1
    batch_size: Annotated[
        int | None,
        Field(
            ge=1,
            description=f"Points per mini-batch; not given: all the training points, at most {DEFAULT_BATCH_SIZE}.",
        ),
    ] = None
    epochs: Annotated[int, Field(ge=1)] = 100
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    shuffle: bool = True
    drop_last: bool = False
    initial_parameters: Parameters | None = None
    validation_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    early_stopping: EarlyStopping | None = None
    dtype: Dtype = "float32"
    device: Device = "auto"


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


class PredictOut(BaseModel):
    y: list[float | None]  # None where the output overflows a float


class Halving(Strict):
    """Successive halving: rungs at min_epochs * reduction_factor**k epochs up to the base's epochs;
    at each, the best 1/reduction_factor of the trials go on. Hyperband with brackets > 1."""

    min_epochs: Annotated[int, Field(ge=1)]
    reduction_factor: Annotated[int, Field(ge=2, le=1000)] = 3
    brackets: Annotated[int, Field(ge=1, le=32)] = 1


class TrialCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    pruned: int


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
    search: dict[str, Any] | None = None  # a model-based search's sampler, trials, seed, batch and ranges
    halving: Halving | None
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
    epochs_completed: int
    bracket: int | None = None  # with halving: its Hyperband bracket
    rung: int | None = None  # with halving: the epochs of the last rung it reached


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
    parameters: Parameters | None = Field(
        default=None, description="The network's seven parameters after epoch epochs_completed, where known."
    )


class SweepProgressEvent(BaseModel):
    """A sweep's `progress` event: its trial counts and epochs summed over the trials."""

    trials: TrialCounts
    epochs_completed: int
    epochs: int


ModelFormat = Literal["onnx", "pt2", "json"]  # GET .../model?format=


WebhookEvent = Literal[
    "job.succeeded", "job.failed", "job.cancelled", "sweep.succeeded", "sweep.failed", "sweep.cancelled"
]


class Webhook(BaseModel):
    """An endpoint; `enabled` false (with `disabled_reason`) once a delivery failed every try."""

    id: str
    url: str
    events: list[WebhookEvent]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class WebhookWithSecret(Webhook):
    """An endpoint as created or rotated: the only answers that show its signing secret."""

    secret: str


class WebhookDeliveryOut(BaseModel):
    """A delivery as queued (a test ping or a retry)."""

    id: str  # the webhook-id header of every try
    type: str
    status: Literal["pending", "succeeded", "failed"]


class WebhookAttemptOut(BaseModel):
    """One try of a delivery: the HTTP status it got, or the error that stopped it."""

    delivery_id: str
    type: str
    attempted_at: datetime
    http_status: int | None
    error: str | None
    duration_seconds: float
