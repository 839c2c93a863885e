"""Dependencies of the routes: a database session, the key's owner, owned objects, the executor.

Every /v1 route takes OwnerDep, JobDep or DatasetDep: each counts the request against its key's
rate limit and authenticates the key, in the one worker-thread hop that does its database work
(each dependency level and each hop costs more than a query). JobDep and DatasetDep fetch the
object in the same query that checks the key."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.ratelimit import RateLimit
from jobs import keys, tables
from jobs.db import new_session
from jobs.errors import NotFound
from jobs.keys import Owned
from worker.executor import Executor

bearer = HTTPBearer(auto_error=False, description="An API key from `tinytrain keys create --owner NAME`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_session() -> AsyncIterator[Session]:
    # async: making and closing a Session does no I/O, so it needs no hop to a worker thread.
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _counted(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The presented key, after counting the request against its rate limit."""
    if credentials is None:
        return None
    rate_limit: RateLimit = request.app.state.rate_limit
    rate_limit.check(keys.digest(credentials.credentials))
    return credentials.credentials


def _unauthorized() -> HTTPException:
    return HTTPException(401, "a valid API key is required: Authorization: Bearer <key>",
                         headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


def current_owner(request: Request, session: SessionDep, credentials: Credentials) -> str:
    """The owner of the request's API key; 401 without a valid one."""
    key = _counted(request, credentials)
    owner = keys.owner_of(session=session, key=key) if key else None
    if owner is None:
        raise _unauthorized()
    return owner


def _owned(
    request: Request, credentials: HTTPAuthorizationCredentials | None, model: type[Owned], object_id: str
) -> Owned:
    """The key owner's object; 401 for a bad key, 404 for no such object of this owner."""
    key = _counted(request, credentials)
    if key is None:
        raise _unauthorized()
    with new_session() as session:
        found = keys.owned_by_key(session=session, model=model, object_id=object_id, key=key)
        if found is None and keys.owner_of(session=session, key=key) is None:
            raise _unauthorized()
    if found is None:
        raise NotFound(f"{'job' if model is tables.Job else 'dataset'} {object_id} not found")
    return found


def owned_job(job_id: str, request: Request, credentials: Credentials) -> tables.Job:
    return _owned(request, credentials, tables.Job, job_id)


def owned_dataset(dataset_id: str, request: Request, credentials: Credentials) -> tables.Dataset:
    return _owned(request, credentials, tables.Dataset, dataset_id)


OwnerDep = Annotated[str, Depends(current_owner)]
JobDep = Annotated[tables.Job, Depends(owned_job)]
DatasetDep = Annotated[tables.Dataset, Depends(owned_dataset)]


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]
