"""Dependencies of the routes: a database session, the key's owner, owned objects, the executor.

Every /v1 route takes OwnerDep, JobDep, SweepDep or DatasetDep: each counts the request against
its key's rate limit and authenticates the key; the object dependencies fetch the object in the
same query that checks the key. They are async, and read SQLite on the event loop (see short_read): reading a
job is the hottest request, and a hop to a worker thread would cost it more than all its work.

A /v1 request that carries a body is authenticated before anything reads it (KeyBeforeBody):
FastAPI reads and parses a body before it solves the dependencies, so a bad key would otherwise
cost a whole body. Failed authentications are limited per client address (api/ratelimit.py)."""

import inspect
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from api.ratelimit import AuthFailures, RateLimit, client_address
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


async def short_read(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """fn(*args, **kwargs), a short read of the database: inline on SQLite, in a worker thread otherwise.

    SQLite is a file in this process: a point read takes microseconds, less than the hop to a
    thread, and in WAL mode readers never wait for writers. Any other database answers over
    the network, which must not hold up the event loop."""
    if get_engine().dialect.name == "sqlite":
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def get_session() -> AsyncIterator[Session]:
    # Making a Session does no I/O; closing it may roll back, which short_read keeps off the event
    # loop where that goes over the network (a sync dependency would cost every route two hops).
    session = new_session()
    try:
        yield session
    finally:
        await short_read(session.close)


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized() -> HTTPException:
    return HTTPException(
        401, "a valid API key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
    )


# Where KeyBeforeBody leaves the owner it authenticated, in the request's state.
_OWNER = "tinytrain_owner"


def _authenticated(request: Request) -> str | None:
    """The owner KeyBeforeBody authenticated for this request (and counted), or None."""
    owner: str | None = request.scope.get("state", {}).get(_OWNER)
    return owner


def _failures(request: Request) -> AuthFailures:
    rate_limit: RateLimit = request.app.state.rate_limit
    return rate_limit.auth_failures


async def _counted_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The presented key, after counting the request against its rate limit; 401 without one, 429
    from an address over its failed authentications (before any lookup) or for a key over its limit."""
    if credentials is None or not keys.well_formed(credentials.credentials):
        # No key, or one of a shape no key has: a 401 that costs no lookup and no rate-limit
        # bucket, and no guess that could ever succeed, so not a failure to count either.
        raise _unauthorized()
    digest = keys.digest(credentials.credentials)
    await _failures(request).check(client_address(request.scope.get("client")), digest)
    rate_limit: RateLimit = request.app.state.rate_limit
    await rate_limit.check(digest)
    return credentials.credentials


async def _rejected(request: Request, key: str) -> HTTPException:
    """The 401 for key, counted against the client's address."""
    await _failures(request).failed(client_address(request.scope.get("client")), keys.digest(key))
    return _unauthorized()


async def current_owner(request: Request, credentials: Credentials) -> str:
    """The owner of the request's API key; 401 without a valid one."""
    owner = _authenticated(request)
    if owner is not None:
        return owner
    key = await _counted_key(request, credentials)
    owner = await short_read(reads.owner_of, key)
    if owner is None:
        raise await _rejected(request, key)
    _failures(request).succeeded(keys.digest(key))
    return owner


class KeyBeforeBody:
    """Authenticates every /v1 request that carries a body before anything reads the body: a
    missing or bad key is a 401 (a throttled address a 429) without a single receive(), so the
    body costs the service nothing but what uvicorn drops unread. The owner is left in the
    request's state for current_owner, and the request counted once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope) or not (scope["path"] + "/").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: reading the body here would be an error
        try:
            owner = await current_owner(request, await bearer(request))
        except Exception as exc:
            # Answered as a route would answer it: a 401 or 429, a 503 while the database is down.
            handler = _handler(request, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[_OWNER] = owner
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name == b"transfer-encoding":
            return True
    return False


def _handler(request: Request, exc: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's exception handler for exc (errors.install's and FastAPI's), or None."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            handler: Callable[[Request, Exception], Any] = handlers[cls]
            return handler
    return None


_PREFIXES = {Job: "job", Dataset: "ds", Sweep: "sw"}
_KINDS = {"job": "job", "ds": "dataset", "sw": "sweep", "wh": "webhook", "msg": "delivery"}
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


def _owned(table: type[reads.Owned], object_id: str, key: str, key_is_valid: bool) -> reads.Owned | None:
    """The key owner's object; None for a bad key, 404 for no such object of this owner."""
    prefix = _PREFIXES[table]
    found = reads.owned_by_key(table, object_id, key) if well_formed(prefix, object_id) else None
    if found is None and not key_is_valid and reads.owner_of(key) is None:
        return None
    if found is None:
        raise not_found(prefix, object_id)
    return found


async def _owned_object(
    table: type[reads.Owned], object_id: str, request: Request, credentials: HTTPAuthorizationCredentials | None
) -> reads.Owned:
    """The object in one query with the key's check (the owner, if KeyBeforeBody checked it already)."""
    if _authenticated(request) is not None and credentials is not None:
        key, checked = credentials.credentials, True
    else:
        key, checked = await _counted_key(request, credentials), False
    try:
        found = await short_read(_owned, table, object_id, key, checked)
    except NotFound:
        _failures(request).succeeded(keys.digest(key))
        raise
    if found is None:
        raise await _rejected(request, key)
    _failures(request).succeeded(keys.digest(key))
    return found


async def owned_job(job_id: JobId, request: Request, credentials: Credentials) -> Job:
    return await _owned_object(Job, job_id, request, credentials)


async def owned_dataset(dataset_id: DatasetId, request: Request, credentials: Credentials) -> Dataset:
    return await _owned_object(Dataset, dataset_id, request, credentials)


async def owned_sweep(sweep_id: SweepId, request: Request, credentials: Credentials) -> Sweep:
    return await _owned_object(Sweep, sweep_id, request, credentials)


OwnerDep = Annotated[str, Depends(current_owner)]
JobDep = Annotated[Job, Depends(owned_job)]
DatasetDep = Annotated[Dataset, Depends(owned_dataset)]
SweepDep = Annotated[Sweep, Depends(owned_sweep)]


# A retried create with the same key gets what the first created (jobs/idempotency.py).
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200)]


async def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]
