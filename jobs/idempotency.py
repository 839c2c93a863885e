"""Idempotent creation: a retried request gets the object its first try created."""

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.errors import IdempotencyMismatch
from jobs.tables import Dataset, Job, Sweep

Row = TypeVar("Row", bound=Dataset | Job | Sweep)


def commit_once(session: Session, row: Row, write: Callable[[], None]) -> tuple[Row, bool]:
    """write() (which inserts row, and may raise to roll back), then commit; (row, True) when
    it was created.

    With an idempotency key, the unique (owner, idempotency_key) constraint decides between
    concurrent requests: the loser rolls back and gets the first row, (first, False), or
    IdempotencyMismatch when that row came from a different request."""
    try:
        write()
        session.commit()
        return row, True
    except IntegrityError:
        session.rollback()
        if row.idempotency_key is None:
            raise
    model = type(row)
    first = session.scalar(select(model).where(model.owner == row.owner, model.idempotency_key == row.idempotency_key))
    if first is None:
        raise RuntimeError("the unique constraint failed but no row holds the idempotency key")
    if first.request_hash != row.request_hash:
        raise IdempotencyMismatch("this Idempotency-Key was already used with a different request body")
    return first, False
