"""Datasets: points stored in the database as one blob, so a worker on any machine can read them."""

import hashlib

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from jobs.errors import Conflict, NotFound
from jobs.idempotency import commit_once
from jobs.lifecycle import new_id
from jobs.status import ACTIVE
from jobs.tables import Dataset, Job, Sweep

Array = npt.NDArray[np.float64]
Points = tuple[Array, Array]  # x, y


def build(
    *,
    owner: str,
    x: Array,
    y: Array,
    name: str | None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Dataset:
    """A new dataset row (not yet added) for finite points x, y of equal length >= 1."""
    blob = np.concatenate([x, y]).astype("<f8").tobytes()
    return Dataset(
        id=new_id("ds"),
        owner=owner,
        name=name,
        n_points=int(x.size),
        x_min=float(x.min()),
        x_max=float(x.max()),
        y_min=float(y.min()),
        y_max=float(y.max()),
        sha256=hashlib.sha256(blob).hexdigest(),
        points=blob,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


def create(*, session: Session, dataset: Dataset) -> tuple[Dataset, bool]:
    """Store a dataset built by build(); (dataset, created), idempotent by its key."""
    session.add(dataset)
    return commit_once(session, dataset)


def get(*, session: Session, owner: str, dataset_id: str) -> Dataset:
    """The owner's dataset, or NotFound (also for another owner's)."""
    dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner))
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def load_points(*, session: Session, dataset_id: str) -> Points | None:
    """(x, y) of a dataset, or None if it was deleted."""
    blob = session.scalar(select(Dataset.points).where(Dataset.id == dataset_id))
    if blob is None:
        return None
    both = np.frombuffer(blob, dtype="<f8")
    n = both.size // 2
    return both[:n], both[n:]


def remove(*, session: Session, owner: str, dataset_id: str) -> None:
    """Delete a dataset unless a queued or running job or sweep uses it (one conditional DELETE)."""
    in_use = exists().where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE)) | exists().where(
        Sweep.dataset_id == dataset_id, Sweep.status.in_(ACTIVE)
    )
    gone = session.execute(
        delete(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner, ~in_use).returning(Dataset.seq)
    ).first()
    session.commit()
    if gone is None:
        get(session=session, owner=owner, dataset_id=dataset_id)  # NotFound if it is not there
        raise Conflict(f"dataset {dataset_id} is used by a queued or running job or sweep")
