"""The tables: API keys, datasets (points stored as one blob), jobs and sweeps (the truth about a run)."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column

from jobs.db import Base, UTCDateTime, utcnow
from jobs.status import Status


def new_id(prefix: str) -> str:
    """An opaque id with a type prefix, e.g. job_3f9c..."""
    return f"{prefix}_{secrets.token_hex(12)}"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # creation order, for pagination
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    n_points: Mapped[int] = mapped_column(Integer)
    x_min: Mapped[float] = mapped_column(Float)
    x_max: Mapped[float] = mapped_column(Float)
    y_min: Mapped[float] = mapped_column(Float)
    y_max: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # x then y, float64 little-endian; deferred so listing datasets never loads the points.
    points: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)  # sent with a job or sweep, not uploaded


class Leased:
    """The columns of a unit of work a worker claims, leases and finishes (jobs/lifecycle.py):
    a job, or a chunk of a sweep's trials."""

    status: Mapped[Status] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # When "run X" was last sent (None: to send now) and how often: the sweeper sends a run
    # again that waits too long, as a message can be lost (jobs/lifecycle.undispatched).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatches: Mapped[int] = mapped_column(Integer, default=0)
    epochs_completed: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)


class Requested:
    """The columns of what an owner asked to run: a job or a sweep (jobs/admission.py)."""

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # creation order, for pagination
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # all resolved (a sweep's: the base)
    max_runtime_seconds: Mapped[float | None] = mapped_column(Float)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The most bytes its loss histories will store: reserved against the owner's storage quota
    # while it is queued or running (jobs/storage.py).
    history_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Job(Requested, Leased, Base):
    __tablename__ = "jobs"
    # (owner, status): the quota counts an owner's active jobs on every submit.
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"), Index("ix_jobs_owner_status", "owner", "status"))

    last_loss: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = deferred(mapped_column(JSON))
    # The seven parameters after epochs_completed epochs, written with it by each beat and the
    # finish: what the job's progress events carry while it trains.
    last_parameters: Mapped[dict[str, float] | None] = mapped_column(JSON)


class Sweep(Requested, Base):
    """What the client asked for and how it ended; its trials run in SweepChunks."""

    __tablename__ = "sweeps"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"), Index("ix_sweeps_owner_status", "owner", "status"))

    status: Mapped[Status] = mapped_column(String(16))  # the chunks' sum (lifecycle.settle_sweep)
    grid: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    random: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    halving: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # min_epochs, reduction_factor, brackets
    search: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # sampler, trials, seed, batch and ranges
    objective: Mapped[str] = mapped_column(String(32))
    trials_total: Mapped[int] = mapped_column(Integer)
    epochs_total: Mapped[int] = mapped_column(BigInteger)  # summed over the trials: may pass 2**31
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)


class SweepChunk(Leased, Base):
    """Trials [lo, hi) of a sweep: trained in one engine call, claimed and leased like a job."""

    __tablename__ = "sweep_chunks"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    sweep_id: Mapped[str] = mapped_column(String(40), index=True)
    lo: Mapped[int] = mapped_column(Integer)
    hi: Mapped[int] = mapped_column(Integer)
    max_runtime_seconds: Mapped[float | None] = mapped_column(Float)


class Trial(Base):
    """One training of a sweep: its resolved hyperparameters and the scalars of its result.

    Its loss histories live in the histories table: a leaderboard never reads them."""

    __tablename__ = "trials"
    __table_args__ = (Index("ix_trials_sweep_id_objective", "sweep_id", "objective"),)

    sweep_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[Status] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    objective: Mapped[float | None] = mapped_column(Float)
    # A pruned trial's objective at the rung it reached: not ranked, told to a search's sampler.
    rung_objective: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the Result without histories


class History(Base):
    """A run's loss histories as float64 little-endian arrays: a slice is a substring, never a decode of the whole.

    A running job appends one segment per heartbeat (its epochs from `first_epoch` on), so any
    serve process can stream it; the finished run's histories replace them as one segment."""

    __tablename__ = "histories"

    run_id: Mapped[str] = mapped_column(String(40), primary_key=True)  # a job or a sweep
    trial: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 for a job
    first_epoch: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)  # 0-based
    owner: Mapped[str] = mapped_column(String(100))  # the run's: Usage counts the bytes as theirs
    loss: Mapped[bytes] = mapped_column(LargeBinary)
    validation_loss: Mapped[bytes | None] = mapped_column(LargeBinary)


class Usage(Base):
    """The bytes each owner stores (datasets and histories), kept by the database itself:
    triggers (migration 0006) add and take away each row's bytes as it is inserted or deleted,
    so the quota reads one row and no path that writes those tables can forget it."""

    __tablename__ = "usage"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)


class Worker(Base):
    """A Celery worker that is alive: it writes its row every few seconds (worker/reaper.py),
    so serve knows whether any worker reads the gpu queue."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[str] = mapped_column(String(200))  # comma-separated
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the database's clock


class WebhookEndpoint(Base):
    """Where an owner hears about its runs: a URL, the events it wants and the secret that signs them."""

    __tablename__ = "webhook_endpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # creation order, for listing
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint (the outbox): written in the transaction of the change it
    tells, sent until an answer is 2xx or the retry schedule ends. Its id is the webhook-id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the body, signed and sent as it is on every try
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One try of a delivery, as the endpoint's delivery log shows it."""

    __tablename__ = "webhook_attempts"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float] = mapped_column(Float)
