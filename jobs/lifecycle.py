"""The job state machine. Every change is one conditional UPDATE, so races resolve in the database.

    queued --claim--> running --finish--> succeeded | failed | cancelled
    queued --cancel--> cancelled;   running --cancel--> flag read by the run, which ends cancelled
    running, lease expired --reap--> queued again, or failed (worker_lost) after max attempts

Only the current attempt (the attempts count it claimed) may write progress or a result.
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from jobs.db import utcnow
from jobs.errors import Conflict, NotFound, QuotaExceeded
from jobs.idempotency import commit_once
from jobs.tables import Dataset, Job

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)


# The Celery queue of each device choice: gpu workers read gpu, cpu workers cpu, both read train.
QUEUES = {"cuda": "gpu", "cpu": "cpu", "auto": "train"}


def queue_of(hyperparameters: dict[str, Any]) -> str:
    """The queue a job is sent to, from its device."""
    return QUEUES[hyperparameters.get("device", "auto")]


def new_id(prefix: str) -> str:
    """An opaque id with a type prefix, e.g. job_3f9c..."""
    return f"{prefix}_{secrets.token_hex(12)}"


def get_job(*, session: Session, owner: str, job_id: str) -> Job:
    """The owner's job, or NotFound (also for another owner's job)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


@dataclass(frozen=True)
class Claim:
    attempt: int  # this run's number; its writes carry it
    hyperparameters: dict[str, Any]
    dataset_id: str
    max_runtime_seconds: float | None


def claim(*, session: Session, job_id: str, lease_seconds: float) -> Claim | None:
    """queued -> running with a lease; None when the job is gone, cancelled or taken."""
    now = utcnow()
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(status=RUNNING, attempts=Job.attempts + 1, started_at=func.coalesce(Job.started_at, now),
                lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(Job.attempts, Job.hyperparameters, Job.dataset_id, Job.max_runtime_seconds)
    ).one_or_none()  # fmt: skip
    session.commit()
    return Claim(*row) if row is not None else None


def _current(job_id: str, attempt: int) -> ColumnElement[bool]:
    return (Job.id == job_id) & (Job.status == RUNNING) & (Job.attempts == attempt)


def heartbeat(
    *, session: Session, job_id: str, attempt: int, lease_seconds: float, epochs_completed: int, last_loss: float | None
) -> bool | None:
    """Extend the lease and record progress; returns whether a cancel was asked, None if this attempt is stale."""
    flag = session.execute(
        update(Job)
        .where(_current(job_id, attempt))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds), epochs_completed=epochs_completed,
                last_loss=last_loss)
        .returning(Job.cancel_requested)
    ).scalar_one_or_none()  # fmt: skip
    session.commit()
    return flag


def finish(
    *,
    session: Session,
    job_id: str,
    attempt: int,
    status: str,
    result: dict[str, Any] | None,
    epochs_completed: int,
    last_loss: float | None,
    device: str | None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """running -> succeeded | failed | cancelled, by the current attempt only; False if stale."""
    done = session.execute(
        update(Job)
        .where(_current(job_id, attempt))
        .values(status=status, result=result, finished_at=utcnow(), lease_expires_at=None,
                epochs_completed=epochs_completed, last_loss=last_loss, device=device, error_code=error_code,
                error_message=error_message)
        .returning(Job.seq)
    ).first()  # fmt: skip
    session.commit()
    return done is not None


def cancel(*, session: Session, owner: str, job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is flagged and stops within a second."""
    mine = (Job.id == job_id) & (Job.owner == owner)
    now = utcnow()
    done = session.execute(
        update(Job).where(mine, Job.status == QUEUED).values(status=CANCELLED, finished_at=now).returning(Job.seq)
    ).first() or session.execute(
        update(Job).where(mine, Job.status == RUNNING).values(cancel_requested=True).returning(Job.seq)
    ).first()  # fmt: skip
    session.commit()
    job = get_job(session=session, owner=owner, job_id=job_id)
    if done is None:
        raise Conflict(f"job {job_id} is {job.status}: only a queued or running job can be cancelled")
    return job


def reap(*, session: Session, max_attempts: int) -> list[tuple[str, str]]:
    """Deal with running jobs whose lease expired; returns (id, queue) of those queued again."""
    now = utcnow()
    expired = (Job.status == RUNNING) & (Job.lease_expires_at < now)
    session.execute(
        update(Job)
        .where(expired, Job.cancel_requested)
        .values(status=CANCELLED, finished_at=now, lease_expires_at=None)
    )
    session.execute(
        update(Job)
        .where(expired, Job.attempts >= max_attempts)
        .values(status=FAILED, finished_at=now, lease_expires_at=None, error_code="worker_lost",
                error_message=f"the job's worker was lost {max_attempts} times")
    )  # fmt: skip
    requeued = [
        (row.id, queue_of(row.hyperparameters))
        for row in session.execute(
            update(Job)
            .where(expired, Job.attempts < max_attempts)
            .values(status=QUEUED, lease_expires_at=None)
            .returning(Job.id, Job.hyperparameters)
        )
    ]
    session.commit()
    return requeued


def queued(*, session: Session) -> list[tuple[str, str]]:
    """(id, queue) of all queued jobs, oldest first (to dispatch again after a restart)."""
    rows = session.execute(select(Job.id, Job.hyperparameters).where(Job.status == QUEUED).order_by(Job.seq))
    return [(row.id, queue_of(row.hyperparameters)) for row in rows]


def submit(*, session: Session, job: Job, max_active: int, dataset: Dataset | None = None) -> tuple[Job, bool]:
    """Store a new queued job (and its inline dataset) in one transaction; (job, created).

    QuotaExceeded when the owner would have more than max_active queued or running jobs;
    concurrent submits cannot overshoot: they are serialised per owner (PostgreSQL: an advisory
    lock; SQLite: the write lock its first INSERT takes). Dispatch only after this returns."""
    session.commit()  # end any read transaction: on SQLite the insert must begin the transaction
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(job.owner, 0))))
    if dataset is not None:
        session.add(dataset)
    session.add(job)

    def within_quota() -> None:
        active = session.scalar(select(func.count()).where(Job.owner == job.owner, Job.status.in_(ACTIVE)))
        if (active or 0) > max_active:
            raise QuotaExceeded(f"{max_active} queued or running jobs is the limit per owner; wait for some to finish")

    try:
        return commit_once(session, job, before_commit=within_quota)
    except QuotaExceeded:
        session.rollback()
        raise


def withdraw(*, session: Session, job: Job, with_dataset: bool) -> bool:
    """Delete a job whose dispatch failed, and with_dataset the dataset sent inline with it;
    False, deleting nothing, when a worker claimed the job already (the message did go out)."""
    gone = session.execute(
        delete(Job).where(Job.id == job.id, Job.status == QUEUED, Job.attempts == 0).returning(Job.seq)
    ).first()
    if gone is not None and with_dataset:
        session.execute(delete(Dataset).where(Dataset.id == job.dataset_id))
    session.commit()
    return gone is not None
