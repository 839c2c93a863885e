"""Reading and removing sweeps: counts, progress, the best trial, pages of trials.

Every read here is an indexed query over the trials' scalars (status, objective); none reads a
history, so a sweep of 10,000 trials answers as fast as one of ten.
"""

from dataclasses import dataclass

from sqlalchemy import BigInteger, Select, delete, func, literal, select
from sqlalchemy.orm import Session

from jobs import results, storage
from jobs.errors import Conflict, NotFound
from jobs.status import ACTIVE, Status
from jobs.tables import Sweep, SweepChunk, Trial


@dataclass
class State:
    """What a sweep's own row does not hold: the sum of its trials and chunks."""

    counts: dict[Status, int]
    epochs_completed: int
    best: Trial | None
    device: str | None
    attempts: int


def state(session: Session, sweep: Sweep) -> State:
    counts = dict.fromkeys(Status, 0)
    by_status = select(Trial.status, func.count()).where(Trial.sweep_id == sweep.id).group_by(Trial.status)
    counts.update({Status(status): n for status, n in session.execute(by_status)})
    chunks = select(
        func.coalesce(func.sum(SweepChunk.epochs_completed), 0),
        func.max(SweepChunk.device),
        func.coalesce(func.max(SweepChunk.attempts), 0),
    ).where(SweepChunk.sweep_id == sweep.id)
    epochs, device, attempts = session.execute(chunks).one()
    return State(counts, int(epochs), best(session, sweep.id), device, int(attempts))


def _ranked(sweep_id: str) -> Select[Trial]:
    """The sweep's trials, smallest objective first, those without one last, then by index."""
    return (
        select(Trial)
        .where(Trial.sweep_id == sweep_id)
        .order_by(Trial.objective.is_(None), Trial.objective, Trial.index)
    )


def best(session: Session, sweep_id: str) -> Trial | None:
    return session.scalar(_ranked(sweep_id).where(Trial.objective.is_not(None)).limit(1))


def trials_page(
    session: Session, sweep_id: str, order_by: str, limit: int, after: int | None
) -> tuple[list[Trial], int | None]:
    """A page of trials that come after trial `after` in this order (from the start when None),
    and the index to pass as `after` for the next page (None at the end).

    Keyset, not offset: a trial that finishes while a client pages through the leaderboard moves
    into the ranked part but never makes another row appear twice or not at all."""
    if order_by == "index":
        query = select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.index)
        if after is not None:
            query = query.where(Trial.index > literal(after, BigInteger()))
    else:
        query = _ranked(sweep_id)
        # No trial has an index past the 32-bit column (PostgreSQL would refuse to look for one).
        last = session.get(Trial, (sweep_id, after)) if after is not None and after < 2**31 else None
        if last is not None and last.objective is None:
            query = query.where(Trial.objective.is_(None), Trial.index > last.index)
        elif last is not None:
            later = (Trial.objective == last.objective) & (Trial.index > last.index)
            query = query.where(Trial.objective.is_(None) | (Trial.objective > last.objective) | later)
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], rows[limit - 1].index if len(rows) > limit else None


def trial(session: Session, sweep_id: str, index: int) -> Trial:
    found = session.get(Trial, (sweep_id, index))
    if found is None:
        raise NotFound(f"sweep {sweep_id} has no trial {index}")
    return found


def remove(session: Session, sweep: Sweep) -> None:
    """Delete a finished sweep with its chunks, trials and histories (and the dataset sent inline
    with it, unless another run uses it); Conflict while it runs."""
    gone = session.execute(
        delete(Sweep).where(Sweep.id == sweep.id, Sweep.status.not_in(ACTIVE)).returning(Sweep.seq)
    ).first()
    if gone is None:
        raise Conflict(f"sweep {sweep.id} is {sweep.status}: cancel it first")
    session.execute(delete(SweepChunk).where(SweepChunk.sweep_id == sweep.id))
    session.execute(delete(Trial).where(Trial.sweep_id == sweep.id))
    results.remove_histories(session, sweep.id)
    storage.drop_unused_inline(session, [sweep.dataset_id])
    session.commit()
