"""Dependencies of the routes: a database session, the key's owner, owned objects, the executor.

Every /v1 route takes OwnerDep, JobDep or DatasetDep; each authenticates the key. JobDep and
DatasetDep do it in the same query as their fetch: reading a job is the hottest request."""

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


def authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The owner of the request's API key; 401 without a valid one."""
    owner = keys.owner_of(session=session, key=credentials.credentials) if credentials else None
    if owner is None:
        raise HTTPException(401, "a valid API key is required: Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return owner


async def limited(request: Request, credentials: Credentials) -> HTTPAuthorizationCredentials | None:
    """The request's credentials, after counting the request against its key's rate limit."""
    if credentials is not None:
        rate_limit: RateLimit = request.app.state.rate_limit
        await rate_limit.check(keys.digest(credentials.credentials))
    return credentials


LimitedCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(limited)]


def current_owner(session: SessionDep, credentials: LimitedCredentials) -> str:
    return authenticate(session, credentials)


def owned(
    session: Session, credentials: HTTPAuthorizationCredentials | None, model: type[Owned], object_id: str
) -> Owned:
    """The key owner's object; 401 for a bad key, 404 for no such object of this owner."""
    found = (
        keys.owned_by_key(session=session, model=model, object_id=object_id, key=credentials.credentials)
        if credentials
        else None
    )
    if found is None:
        authenticate(session, credentials)
        raise NotFound(f"{'job' if model is tables.Job else 'dataset'} {object_id} not found")
    return found


def owned_job(job_id: str, session: SessionDep, credentials: LimitedCredentials) -> tables.Job:
    return owned(session, credentials, tables.Job, job_id)


def owned_dataset(dataset_id: str, session: SessionDep, credentials: LimitedCredentials) -> tables.Dataset:
    return owned(session, credentials, tables.Dataset, dataset_id)


OwnerDep = Annotated[str, Depends(current_owner)]
JobDep = Annotated[tables.Job, Depends(owned_job)]
DatasetDep = Annotated[tables.Dataset, Depends(owned_dataset)]


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]
