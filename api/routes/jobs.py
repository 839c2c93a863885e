"""/v1/jobs: submit, read, list, cancel, result, predict."""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import numpy as np
import numpy.typing as npt
import pydantic_core
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

import model
from api import schemas
from api.deps import (
    ExecutorDep,
    IdempotencyKey,
    JobDep,
    JobId,
    OwnerDep,
    SessionDep,
    check_id,
    short_read,
)
from api.errors import error, invalid
from api.jsonbody import JSONRoute
from api.live import Watcher, prefer_wait, until_ended, wait_deadline
from api.pages import Cursor, Limit, owned_page
from jobs import admission, lifecycle, reads, results, storage, summaries, tables
from jobs.errors import Conflict
from jobs.settings import get_settings
from jobs.status import ACTIVE, Status
from worker.executor import Executor

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=JSONRoute)

# A slice of a result's epochs (from 0, stop excluded), or at most max_points of them.
Start = Annotated[int, Query(ge=0, le=2**31, description="The first epoch of the slice, counting from 0.")]
Stop = Annotated[int | None, Query(ge=1, le=2**31, description="The epoch after the slice's last (empty if <= start).")]
MaxPoints = Annotated[int | None, Query(ge=2, le=1_000_000, description="At most this many entries, evenly spaced.")]


def job_summary(job: tables.Job) -> schemas.JobSummary:
    return schemas.JobSummary.model_validate(summaries.job(job))


def job_out(job: tables.Job) -> schemas.Job:
    return schemas.Job.model_validate({**summaries.job(job), "result": job.result})


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
        request_hash=admission.request_hash(body.model_dump_json()) if idempotency_key is not None else None,
        grid=sweep.grid if sweep else None,
        random=sweep.random.model_dump() if sweep and sweep.random else None,
        search=sweep.search.model_dump() if sweep and sweep.search else None,
        halving=sweep.halving.model_dump() if sweep and sweep.halving else None,
        objective=sweep.objective if sweep else None,
    )


CREATED_BEFORE = {"description": "What an earlier request with this Idempotency-Key created."}
QUEUE_DOWN = error(503, "The job queue is down; nothing was stored.")


@dataclass
class Submission:
    """What a submit route takes besides its body: the key's owner, a session, the executor, the
    response (its status and Location) and the Idempotency-Key."""

    owner: str
    session: Session
    executor: Executor
    response: Response
    idempotency_key: str | None

    def submit(self, body: schemas.JobIn | schemas.SweepIn) -> tables.Job | tables.Sweep:
        """Admit and queue a job or a sweep: 202 when created, 200 for a retry of the same request."""
        if body.dataset_id is not None:
            check_id("ds", body.dataset_id)  # of another shape it names no dataset: 404 without a query
        settings, session, executor = get_settings(), self.session, self.executor
        request = submit_request(self.owner, body, self.idempotency_key)
        admit = admission.admit_sweep if isinstance(body, schemas.SweepIn) else admission.admit_job
        admitted = admit(session=session, request=request, settings=settings, has_cuda=executor.has_cuda)
        row, created = admission.enqueue(
            session=session, admitted=admitted, settings=settings, dispatch=executor.dispatch
        )
        self.response.status_code = 202 if created else 200
        self.response.headers["Location"] = f"/v1/{row.__tablename__}/{row.id}"
        return row


async def submission(
    owner: OwnerDep,
    session: SessionDep,
    executor: ExecutorDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Submission:
    # A function, not the class itself: FastAPI builds a class dependency in a worker thread,
    # a hop per submit.
    return Submission(owner, session, executor, response, idempotency_key)


SubmissionDep = Annotated[Submission, Depends(submission)]


PreferHeader = Annotated[
    str | None,
    Header(
        description="`wait=N` (RFC 7240, N from 0 to 60): answer when the job has ended, or after N seconds.",
        examples=["wait=10"],
    ),
]
ENDED_WITHIN = {"model": schemas.Job, "description": "The job ended within the Prefer: wait (or was created before)."}


async def _waited(
    request: Request, response: Response, job: tables.Job, seconds: int | None, deadline: float
) -> tables.Job:
    """The job once it ended or the wait is over (Prefer: wait=seconds, the answer by deadline),
    read again; job itself without a wait."""
    if seconds is None:
        return job
    if job.status not in ACTIVE:
        response.headers["Preference-Applied"] = f"wait={seconds}"
        return job
    watcher: Watcher = request.app.state.watcher
    if not watcher.waiting.take(job.owner):
        return job  # the owner has enough requests waiting: answered now, the preference not applied (RFC 7240)
    response.headers["Preference-Applied"] = f"wait={seconds}"

    async def read() -> tables.Job:
        found = await short_read(reads.owned_by_id, tables.Job, job.id)
        return found or job  # deleted meanwhile: what was read before

    try:
        return await until_ended(watcher, job.id, deadline, read)
    finally:
        watcher.waiting.give_back(job.owner)


@router.post("", status_code=202, responses={200: ENDED_WITHIN, **QUEUE_DOWN})
async def submit_job(
    body: schemas.JobIn, submission: SubmissionDep, request: Request, prefer: PreferHeader = None
) -> schemas.Job:
    """Queue a training job on a stored dataset (dataset_id) or on points sent inline (dataset).

    With `Prefer: wait=N`, the answer comes when the job has ended (200, with its result) or
    after N seconds (202), whichever is first."""
    seconds = prefer_wait(prefer)
    deadline = wait_deadline(seconds or 0)  # counted from the request's arrival, submitting included
    job = await run_in_threadpool(submission.submit, body)
    assert isinstance(job, tables.Job)
    job = await _waited(request, submission.response, job, seconds, deadline)
    if job.status not in ACTIVE:
        submission.response.status_code = 200
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
async def get_job(job: JobDep, request: Request, response: Response, prefer: PreferHeader = None) -> schemas.Job:
    """A job: status, progress, error and the scalars of its (partial) result. With
    `Prefer: wait=N`, the answer comes when the job has ended or after N seconds."""
    seconds = prefer_wait(prefer)
    return job_out(await _waited(request, response, job, seconds, wait_deadline(seconds or 0)))


@router.post("/{job_id}/cancel", status_code=202, responses=error(409, "The job has already finished."))
def cancel_job(job_id: JobId, owner: OwnerDep, session: SessionDep) -> schemas.Job:
    """A queued job never starts; a running one stops within a second and ends cancelled."""
    return job_out(lifecycle.cancel(session=session, owner=owner, job_id=check_id("job", job_id)))


def _succeeded(job: tables.Job) -> dict[str, Any]:
    if job.status != Status.SUCCEEDED or job.result is None:
        raise Conflict(f"job {job.id} is {job.status}: there is a result once it has succeeded")
    return job.result


# Encoding a big result holds the GIL (a million epochs: some 20 MB of JSON), and every thread
# that wants the GIL shrinks the event loop's share of it: one big result encodes at a time, the
# others wait on the loop, not in a request thread; and it encodes in short pieces.
_BIG_RESULTS = anyio.CapacityLimiter(1)
_BIG = 100_000  # history entries from which a result waits its turn (2 MB of JSON)
_PIECE = 8192  # history entries per encoder call, each a short hold of the GIL


def json_numbers(values: npt.NDArray[Any]) -> Iterator[bytes]:
    """values as JSON numbers (null where not finite), comma-separated, in short pieces."""
    for i in range(0, values.size, _PIECE):
        time.sleep(0)  # lets the GIL go: the event loop, if it waits for it, gets it now
        piece = pydantic_core.to_json(values[i : i + _PIECE].tolist(), inf_nan_mode="null")
        yield (b"," if i else b"") + piece[1:-1]


def _json_array(values: npt.NDArray[Any] | None) -> Iterator[bytes]:
    if values is None:
        yield b"null"
        return
    yield b"["
    yield from json_numbers(values)
    yield b"]"


async def result_response(
    session: Session,
    scalars: dict[str, Any],
    run_id: str,
    trial: int,
    start: int,
    stop: int | None,
    max_points: int | None,
    before: bytes = b"",
) -> Response:
    """A Result (after `before`, the JSON of what holds it): its scalars, and the histories of
    epochs [start, stop) (at most max_points of them) encoded in a thread from the arrays the
    database gave, in pieces (FastAPI would build and encode a model of a million floats in one
    call on the event loop); big ones one at a time."""
    sliced = start > 0 or stop is not None or max_points is not None

    def encode() -> bytes:
        epochs, loss, val = results.read_history(session, run_id, trial, start, stop, max_points)
        body = [before, schemas.ResultSummary.model_validate(scalars).model_dump_json().encode()[:-1]]
        for name, values in (
            ("loss_history", loss),
            ("validation_loss_history", val),
            ("epochs", epochs if sliced else None),
        ):
            body += [f',"{name}":'.encode(), *_json_array(values)]
        return b"".join([*body, b"}}" if before else b"}"])

    limiter = _BIG_RESULTS if scalars["epochs_completed"] >= _BIG else None
    return Response(await anyio.to_thread.run_sync(encode, limiter=limiter), media_type="application/json")


@router.get("/{job_id}/result", response_model=schemas.Result, responses=error(409, "The job has not succeeded."))
async def get_result(
    job: JobDep, session: SessionDep, start: Start = 0, stop: Stop = None, max_points: MaxPoints = None
) -> Response:
    """The seven learned parameters and the loss histories (whole, a slice of epochs, or at most
    max_points evenly spaced epochs, first and last included); 409 unless the job succeeded."""
    return await result_response(session, _succeeded(job), job.id, 0, start, stop, max_points)


def predicted(parameters: dict[str, float], x: list[float]) -> schemas.PredictOut:
    limit = get_settings().max_predict_points
    if len(x) > limit:
        raise invalid(("body", "x"), f"at most {limit} values")
    return schemas.PredictOut(y=[v if math.isfinite(v) else None for v in model.predict(parameters, x)])


@router.post("/{job_id}/predict", responses=error(409, "The job has not succeeded."))
def predict(job: JobDep, body: schemas.PredictIn) -> schemas.PredictOut:
    """The trained network's output for each x; 409 unless the job succeeded."""
    return predicted(_succeeded(job)["parameters"], body.x)


@router.delete("/{job_id}", status_code=204, responses=error(409, "The job is queued or running."))
def delete_job(job_id: JobId, owner: OwnerDep, session: SessionDep) -> Response:
    """Delete a finished job with its result, and its dataset if it was sent inline and nothing else
    uses it; 409 while the job is queued or running (cancel it first)."""
    storage.remove_job(session=session, owner=owner, job_id=check_id("job", job_id))
    return Response(status_code=204)
