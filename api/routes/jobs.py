"""/v1/jobs: submit, read, list, cancel, result, predict."""

import hashlib
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import select

import model
from api import schemas
from api.deps import ExecutorDep, IdempotencyKey, JobDep, OwnerDep, SessionDep
from api.errors import error, invalid
from api.jsonbody import JSONRoute
from api.pages import Cursor, Limit, page
from jobs import datasets, lifecycle, tables
from jobs.db import Record
from jobs.errors import Conflict
from jobs.settings import get_settings
from model.training import split_sizes

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=JSONRoute)


def job_summary(job: tables.Job | Record) -> dict[str, Any]:
    return {
        "id": job.id, "name": job.name, "status": job.status, "dataset_id": job.dataset_id,
        "hyperparameters": job.hyperparameters, "max_runtime_seconds": job.max_runtime_seconds,
        "progress": {"epochs_completed": job.epochs_completed, "epochs": job.hyperparameters["epochs"],
                     "last_loss": job.last_loss},
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "device": job.device, "attempts": job.attempts,
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
    }  # fmt: skip


def job_out(job: tables.Job | Record) -> dict[str, Any]:
    return {**job_summary(job), "result": job.result}


@router.post("", status_code=202, response_model=schemas.Job,
             responses={200: {"model": schemas.Job, "description": "The job an earlier request with this "
                                                                   "Idempotency-Key created."},
                        **error(503, "The job queue is down; nothing was stored.")})  # fmt: skip
def submit_job(
    body: schemas.JobIn,
    owner: OwnerDep,
    session: SessionDep,
    executor: ExecutorDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Queue a training job on a stored dataset (dataset_id) or on points sent inline (dataset)."""
    settings = get_settings()
    hp = body.hyperparameters
    if hp.epochs > settings.max_epochs:
        raise invalid(("body", "hyperparameters", "epochs"), f"at most {settings.max_epochs} epochs")
    if hp.device == "cuda" and not executor.has_cuda:
        raise invalid(("body", "hyperparameters", "device"), "no worker of this service has a CUDA device")
    inline = None
    if body.dataset is not None:
        if len(body.dataset.x) > settings.max_points:
            raise invalid(("body", "dataset", "x"), f"at most {settings.max_points} points")
        inline = datasets.build(owner=owner, x=np.array(body.dataset.x), y=np.array(body.dataset.y), name=body.name)
        n_points, dataset_id = inline.n_points, inline.id
    else:
        assert body.dataset_id is not None
        stored = datasets.get(session=session, owner=owner, dataset_id=body.dataset_id)
        n_points, dataset_id = stored.n_points, stored.id
    if n_points * hp.epochs > settings.max_work:
        limit = f"the limit of {settings.max_work} point-epochs"
        raise invalid(("body", "hyperparameters", "epochs"), f"{n_points} points x {hp.epochs} epochs is over {limit}")
    try:
        split_sizes(n_points, hp.validation_fraction, hp.batch_size)
    except model.TrainingInputError as exc:
        raise invalid(("body", "hyperparameters", exc.field or ""), str(exc)) from exc
    job, created = lifecycle.submit(
        session=session,
        job=tables.Job(
            id=lifecycle.new_id("job"), owner=owner, name=body.name, status=lifecycle.QUEUED, dataset_id=dataset_id,
            hyperparameters=hp.model_dump(), max_runtime_seconds=body.max_runtime_seconds,
            attempts=0, cancel_requested=False, epochs_completed=0, result=None, idempotency_key=idempotency_key,
            request_hash=hashlib.sha256(body.model_dump_json().encode()).hexdigest(),
        ),
        dataset=inline,
        max_active=settings.max_active_jobs_per_owner,
    )  # fmt: skip
    if created:
        try:
            executor.dispatch(job.id, lifecycle.queue_of(job.hyperparameters))
        except Exception as exc:
            # The queue is down: take the job back rather than leave one that never runs (unless
            # a worker has it already: then the message went out before the error).
            if lifecycle.withdraw(session=session, job=job, with_dataset=inline is not None):
                raise HTTPException(503, "the job queue is unavailable; nothing was stored, try again shortly") from exc
            job = lifecycle.get_job(session=session, owner=owner, job_id=job.id)
    else:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_out(job)


@router.get("", response_model=schemas.Page[schemas.JobSummary])
def list_jobs(
    owner: OwnerDep,
    session: SessionDep,
    status: schemas.Status | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The owner's jobs, newest first; pass next_cursor to get the next page."""
    query = select(tables.Job).where(tables.Job.owner == owner)
    if status is not None:
        query = query.where(tables.Job.status == status)
    return page(session, query, tables.Job, limit, cursor, job_summary)


@router.get("/{job_id}", response_model=schemas.Job)
async def get_job(job: JobDep) -> dict[str, Any]:
    """A job: status, progress, error and (partial) result."""
    return job_out(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=schemas.Job,
             responses=error(409, "The job has already finished."))  # fmt: skip
def cancel_job(job_id: str, owner: OwnerDep, session: SessionDep) -> dict[str, Any]:
    """A queued job never starts; a running one stops within a second and ends cancelled."""
    return job_out(lifecycle.cancel(session=session, owner=owner, job_id=job_id))


def _succeeded(job: Record) -> dict[str, Any]:
    if job.status != lifecycle.SUCCEEDED or job.result is None:
        raise Conflict(f"job {job.id} is {job.status}: there is a result once it has succeeded")
    result: dict[str, Any] = job.result
    return result


@router.get("/{job_id}/result", response_model=schemas.Result, responses=error(409, "The job has not succeeded."))
async def get_result(job: JobDep) -> dict[str, Any]:
    """The seven learned parameters and the loss history; 409 unless the job succeeded."""
    return _succeeded(job)


@router.post("/{job_id}/predict", response_model=schemas.PredictOut, responses=error(409, "The job has not succeeded."))
def predict(job: JobDep, body: schemas.PredictIn) -> dict[str, Any]:
    """The trained network's output for each x; 409 unless the job succeeded."""
    limit = get_settings().max_predict_points
    if len(body.x) > limit:
        raise invalid(("body", "x"), f"at most {limit} values")
    y = model.predict(_succeeded(job)["parameters"], body.x)
    return {"y": [v if math.isfinite(v) else None for v in y]}
