"""/v1/jobs: submit, read, list, cancel, result, predict."""

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Response

import model
from api import schemas
from api.deps import ExecutorDep, IdempotencyKey, JobDep, JobId, OwnerDep, SessionDep, check_id
from api.errors import error, invalid
from api.jsonbody import JSONRoute
from api.pages import Cursor, Limit, owned_page
from jobs import admission, lifecycle, results, tables
from jobs.errors import Conflict
from jobs.settings import get_settings
from jobs.status import Status

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=JSONRoute)

# A slice of a result's epochs (from 0, stop excluded), or at most max_points of them.
Start = Annotated[int, Query(ge=0, le=2**31, description="The first epoch of the slice, counting from 0.")]
Stop = Annotated[int | None, Query(ge=1, le=2**31, description="The epoch after the slice's last (empty if <= start).")]
MaxPoints = Annotated[int | None, Query(ge=2, le=1_000_000, description="At most this many entries, evenly spaced.")]


def run_fields(row: tables.Job | tables.Sweep) -> dict[str, Any]:
    """The fields of schemas.RunOut that a job or sweep row holds itself (not device, attempts)."""
    names = ("id", "name", "status", "dataset_id", "hyperparameters", "max_runtime_seconds")
    return {
        **{name: getattr(row, name) for name in names},
        **{"created_at": row.created_at, "started_at": row.started_at, "finished_at": row.finished_at},
        "error": schemas.Error.of(row.error_code, row.error_message),
    }


def job_summary(job: tables.Job) -> schemas.JobSummary:
    progress = schemas.Progress(
        epochs_completed=job.epochs_completed, epochs=job.hyperparameters["epochs"], last_loss=job.last_loss
    )
    return schemas.JobSummary(**run_fields(job), progress=progress, device=job.device, attempts=job.attempts)


def job_out(job: tables.Job) -> schemas.Job:
    summary = job.result and schemas.ResultSummary.model_validate(job.result)
    return schemas.Job(**dict(job_summary(job)), result=summary)


def submit_request(owner: str, body: schemas.JobIn | schemas.SweepIn, idempotency_key: str | None) -> admission.Request:
    """What the body asks, as plain values for admission."""
    points = (np.array(body.dataset.x), np.array(body.dataset.y)) if body.dataset is not None else None
    sweep = body if isinstance(body, schemas.SweepIn) else None
    return admission.Request(
        owner=owner,
        hyperparameters=body.hyperparameters.model_dump(),
        dataset_id=body.dataset_id,
        points=points,
        name=body.name,
        max_runtime_seconds=body.max_runtime_seconds,
        idempotency_key=idempotency_key,
        request_hash=admission.request_hash(body.model_dump_json()),
        grid=sweep.grid if sweep else None,
        random=sweep.random.model_dump() if sweep and sweep.random else None,
        objective=sweep.objective if sweep else None,
    )


CREATED_BEFORE = {"description": "What an earlier request with this Idempotency-Key created."}
QUEUE_DOWN = error(503, "The job queue is down; nothing was stored.")


@dataclass
class Submission:
    """What a submit route takes besides its body: the key's owner, a session, the executor, the
    response (its status and Location) and the Idempotency-Key."""

    owner: OwnerDep
    session: SessionDep
    executor: ExecutorDep
    response: Response
    idempotency_key: IdempotencyKey = None

    def submit(self, body: schemas.JobIn | schemas.SweepIn) -> tables.Job | tables.Sweep:
        """Admit and queue a job or a sweep: 202 when created, 200 for a retry of the same request."""
        if body.dataset_id is not None:
            check_id("ds", body.dataset_id)  # of another shape it names no dataset: 404 without a query
        settings, session, executor = get_settings(), self.session, self.executor
        request = submit_request(self.owner, body, self.idempotency_key)
        admit = admission.admit_sweep if isinstance(body, schemas.SweepIn) else admission.admit_job
        admitted = admit(session=session, request=request, settings=settings, has_cuda=executor.has_cuda)
        max_active = settings.max_active_jobs_per_owner
        row, created = admission.enqueue(
            session=session, admitted=admitted, max_active=max_active, dispatch=executor.dispatch
        )
        self.response.status_code = 202 if created else 200
        self.response.headers["Location"] = f"/v1/{row.__tablename__}/{row.id}"
        return row


SubmissionDep = Annotated[Submission, Depends()]


@router.post("", status_code=202, responses={200: {"model": schemas.Job, **CREATED_BEFORE}, **QUEUE_DOWN})
def submit_job(body: schemas.JobIn, submission: SubmissionDep) -> schemas.Job:
    """Queue a training job on a stored dataset (dataset_id) or on points sent inline (dataset)."""
    job = submission.submit(body)
    assert isinstance(job, tables.Job)
    return job_out(job)


@router.get("")
def list_jobs(
    owner: OwnerDep,
    session: SessionDep,
    status: Status | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> schemas.Page[schemas.JobSummary]:
    """The owner's jobs, newest first; pass next_cursor to get the next page."""
    return owned_page(session, tables.Job, owner, status, limit, cursor, job_summary)


@router.get("/{job_id}")
async def get_job(job: JobDep) -> schemas.Job:
    """A job: status, progress, error and the scalars of its (partial) result."""
    return job_out(job)


@router.post("/{job_id}/cancel", status_code=202, responses=error(409, "The job has already finished."))
def cancel_job(job_id: JobId, owner: OwnerDep, session: SessionDep) -> schemas.Job:
    """A queued job never starts; a running one stops within a second and ends cancelled."""
    return job_out(lifecycle.cancel(session=session, owner=owner, job_id=check_id("job", job_id)))


def _succeeded(job: tables.Job) -> dict[str, Any]:
    if job.status != Status.SUCCEEDED or job.result is None:
        raise Conflict(f"job {job.id} is {job.status}: there is a result once it has succeeded")
    return job.result


def full_result(
    session: SessionDep,
    scalars: dict[str, Any],
    run_id: str,
    trial: int,
    start: int,
    stop: int | None,
    max_points: int | None,
) -> schemas.Result:
    """The Result with the histories of epochs [start, stop), at most max_points of them."""
    # No history is longer than max_epochs: clamping changes no answer and keeps the byte
    # offsets the database computes within its integer type.
    longest = min(get_settings().max_epochs, 2**27)
    start, stop = min(start, longest), min(stop, longest) if stop is not None else None
    epochs, loss, val = results.read_history(session, run_id, trial, start, stop, max_points)
    sliced = start > 0 or stop is not None or max_points is not None
    return schemas.Result(
        **scalars, loss_history=loss, validation_loss_history=val, epochs=epochs.tolist() if sliced else None
    )


@router.get("/{job_id}/result", responses=error(409, "The job has not succeeded."))
def get_result(
    job: JobDep, session: SessionDep, start: Start = 0, stop: Stop = None, max_points: MaxPoints = None
) -> schemas.Result:
    """The seven learned parameters and the loss histories (whole, a slice of epochs, or at most
    max_points evenly spaced epochs, first and last included); 409 unless the job succeeded."""
    return full_result(session, _succeeded(job), job.id, 0, start, stop, max_points)


def predicted(parameters: dict[str, float], x: list[float]) -> schemas.PredictOut:
    limit = get_settings().max_predict_points
    if len(x) > limit:
        raise invalid(("body", "x"), f"at most {limit} values")
    return schemas.PredictOut(y=[v if math.isfinite(v) else None for v in model.predict(parameters, x)])


@router.post("/{job_id}/predict", responses=error(409, "The job has not succeeded."))
def predict(job: JobDep, body: schemas.PredictIn) -> schemas.PredictOut:
    """The trained network's output for each x; 409 unless the job succeeded."""
    return predicted(_succeeded(job)["parameters"], body.x)
