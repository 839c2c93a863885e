"""Dependencies of the routes: a database session, the key's owner, owned objects, the executor."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, undefer

from jobs import datasets, keys, lifecycle, tables
from jobs.db import new_session
from worker.executor import Executor

bearer = HTTPBearer(auto_error=False, description="An API key from `tinytrain keys create --owner NAME`.")


def get_session() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def current_owner(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The owner of the request's API key; 401 without a valid one."""
    owner = keys.owner_of(session=session, key=credentials.credentials) if credentials else None
    if owner is None:
        raise HTTPException(401, "a valid API key is required: Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return owner


OwnerDep = Annotated[str, Depends(current_owner)]


def owned_job(job_id: str, owner: OwnerDep, session: SessionDep) -> tables.Job:
    return lifecycle.get_job(session=session, owner=owner, job_id=job_id, options=[undefer(tables.Job.result)])


def owned_dataset(dataset_id: str, owner: OwnerDep, session: SessionDep) -> tables.Dataset:
    return datasets.get(session=session, owner=owner, dataset_id=dataset_id)


JobDep = Annotated[tables.Job, Depends(owned_job)]
DatasetDep = Annotated[tables.Dataset, Depends(owned_dataset)]


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]
