"""Dependencies of the routes: a database session, the key's owner, owned objects, the executor.

Every /v1 route takes OwnerDep, JobDep, SweepDep or DatasetDep: each counts the request against
its key's rate limit and authenticates the key; the object dependencies fetch the object in the
same query that checks the key. They are async, and read SQLite on the event loop (see _read): reading a
job is the hottest request, and a hop to a worker thread would cost it more than all its work."""

import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.ratelimit import RateLimit
from api.schemas import ID_PATTERNS
from jobs import keys, reads
from jobs.db import get_engine, new_session
from jobs.errors import NotFound
from jobs.tables import Dataset, Job, Sweep
from worker.executor import Executor

P = ParamSpec("P")
T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="An API key from `tinytrain keys create --owner NAME`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def _read(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """fn(*args, **kwargs), a short read of the database: inline on SQLite, in a worker thread otherwise.

    SQLite is a file in this process: a point read takes microseconds, less than the hop to a
    thread, and in WAL mode readers never wait for writers. Any other database answers over
    the network, which must not hold up the event loop."""
    if get_engine().dialect.name == "sqlite":
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def get_session() -> AsyncIterator[Session]:
    # Making a Session does no I/O; closing it may roll back, which _read keeps off the event
    # loop where that goes over the network (a sync dependency would cost every route two hops).
    session = new_session()
    try:
        yield session
    finally:
        await _read(session.close)


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized() -> HTTPException:
    return HTTPException(
        401, "a valid API key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
    )


async def _counted_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The presented key, after counting the request against its rate limit; 401 without one."""
    if credentials is None:
        raise _unauthorized()
    rate_limit: RateLimit = request.app.state.rate_limit
    await rate_limit.check(keys.digest(credentials.credentials))
    return credentials.credentials


async def current_owner(request: Request, credentials: Credentials) -> str:
    """The owner of the request's API key; 401 without a valid one."""
    owner = await _read(reads.owner_of, await _counted_key(request, credentials))
    if owner is None:
        raise _unauthorized()
    return owner


_PREFIXES = {Job: "job", Dataset: "ds", Sweep: "sw"}
_KINDS = {"job": "job", "ds": "dataset", "sw": "sweep"}
_ID_RES = {prefix: re.compile(pattern) for prefix, pattern in ID_PATTERNS.items()}


def _path_id(prefix: str) -> object:
    """A path id's documentation: a 404, not a 422, answers one of another shape, as any unknown id."""
    kind = _KINDS[prefix]
    return Path(
        description=f"The {kind}'s id: `{prefix}_` and 24 lowercase hex digits. Any other id names no {kind} (404).",
        examples=[f"{prefix}_0123456789abcdef01234567"],
    )


JobId = Annotated[str, _path_id("job")]
DatasetId = Annotated[str, _path_id("ds")]
SweepId = Annotated[str, _path_id("sw")]


def well_formed(prefix: str, object_id: str) -> bool:
    """Whether object_id has the shape of an id of prefix's type (job, ds, sw): only such can exist."""
    return _ID_RES[prefix].fullmatch(object_id) is not None


def not_found(prefix: str, object_id: str) -> NotFound:
    shown = object_id if len(object_id) <= 64 else object_id[:64] + "..."
    return NotFound(f"{_KINDS[prefix]} {shown} not found")


def check_id(prefix: str, object_id: str) -> str:
    """object_id, or a 404 without a query when it cannot name an object (a NUL byte, any other shape)."""
    if not well_formed(prefix, object_id):
        raise not_found(prefix, object_id)
    return object_id


def _owned(table: type[reads.Owned], object_id: str, key: str) -> reads.Owned:
    """The key owner's object; 401 for a bad key, 404 for no such object of this owner."""
    prefix = _PREFIXES[table]
    found = reads.owned_by_key(table, object_id, key) if well_formed(prefix, object_id) else None
    if found is None and reads.owner_of(key) is None:
        raise _unauthorized()
    if found is None:
        raise not_found(prefix, object_id)
    return found


async def owned_job(job_id: JobId, request: Request, credentials: Credentials) -> Job:
    return await _read(_owned, Job, job_id, await _counted_key(request, credentials))


async def owned_dataset(dataset_id: DatasetId, request: Request, credentials: Credentials) -> Dataset:
    return await _read(_owned, Dataset, dataset_id, await _counted_key(request, credentials))


async def owned_sweep(sweep_id: SweepId, request: Request, credentials: Credentials) -> Sweep:
    return await _read(_owned, Sweep, sweep_id, await _counted_key(request, credentials))


OwnerDep = Annotated[str, Depends(current_owner)]
JobDep = Annotated[Job, Depends(owned_job)]
DatasetDep = Annotated[Dataset, Depends(owned_dataset)]
SweepDep = Annotated[Sweep, Depends(owned_sweep)]


# A retried create with the same key gets what the first created (jobs/idempotency.py).
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]
