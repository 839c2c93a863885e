"""Cursor pages of an owner's objects, newest first (datasets, jobs and sweeps list the same way)."""

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import BigInteger, Select, literal, select
from sqlalchemy.orm import Session

from api.schemas import Page
from jobs.tables import Dataset, Job, Sweep

# The creation number of the last item shown; the next page starts below it.
Cursor = Annotated[str | None, Query(pattern=r"^c[0-9]{1,18}$", description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=100)]
Row = TypeVar("Row", Dataset, Job, Sweep)
Item = TypeVar("Item", bound=BaseModel)
Run = TypeVar("Run", Job, Sweep)


def page(
    session: Session,
    query: Select[Row],
    model: type[Row],
    limit: int,
    cursor: str | None,
    render: Callable[[Row], Item],
) -> Page[Item]:
    """A page of query (the owner's rows of model), newest first."""
    query = query.order_by(model.seq.desc()).limit(limit + 1)
    if cursor is not None:
        # As a 64-bit value: PostgreSQL would refuse a cursor past the 32-bit column's range.
        query = query.where(model.seq < literal(int(cursor[1:]), BigInteger()))
    rows = list(session.scalars(query))
    more = len(rows) > limit
    return Page[Item](items=[render(r) for r in rows[:limit]], next_cursor=f"c{rows[limit - 1].seq}" if more else None)


def owned_page(
    session: Session,
    model: type[Run],
    owner: str,
    status: str | None,
    limit: int,
    cursor: str | None,
    render: Callable[[Run], Item],
) -> Page[Item]:
    """A page of the owner's rows of model (jobs or sweeps), with the given status if one is given."""
    query = select(model).where(model.owner == owner)
    if status is not None:
        query = query.where(model.status == status)
    return page(session, query, model, limit, cursor, render)
