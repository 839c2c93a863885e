"""The state machine of a unit of work: a job, or a chunk of a sweep's trials (tables.Leased).
Every change is one conditional UPDATE, so races resolve in the database.

    queued --claim--> running --finish--> succeeded | failed | cancelled
    queued --cancel--> cancelled;   running --cancel--> flag read by the run, which ends cancelled
    running, lease expired --reap--> queued again, or failed (worker_lost) after max attempts

Only the current attempt (the attempts count it claimed) may write progress or a result. A
sweep's own status is the sum of its chunks' (settle_sweep), updated with each chunk's change.
Leases are times on the database's clock (db_time), never a worker's.

A queued run is sent to the executor at submit and again by the sweeper (undispatched) when
it waits too long: a message can be lost (a dead queue, a pool process killed), and a second
one is harmless, as only one claim succeeds.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import groupby
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Insert,
    Result,
    Select,
    Update,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from jobs import results, webhooks
from jobs.db import Base, core_table, db_time, utcnow
from jobs.errors import Conflict, NotFound, QuotaExceeded
from jobs.idempotency import commit_once
from jobs.status import ACTIVE, Status
from jobs.tables import Dataset, Job, Leased, Sweep, SweepChunk, Trial

# The Celery queue of each device choice: gpu workers read gpu, cpu workers cpu, both read train.
QUEUES = {"cuda": "gpu", "cpu": "cpu", "auto": "train"}
Submitted = TypeVar("Submitted", bound=Job | Sweep)
Table = type[Job] | type[SweepChunk]


def queue_of(hyperparameters: dict[str, Any]) -> str:
    """The queue a job or a sweep's chunk is sent to, from its device."""
    return QUEUES[hyperparameters.get("device", "auto")]


@dataclass(frozen=True)
class _Unit:
    """What tells the kinds of unit of work apart in the state machine: the table of their rows,
    the hyperparameters that choose their queue, and the rows whose status follows theirs."""

    table: Table
    hyperparameters: Select[tuple[str, dict[str, Any]]]  # (id, hyperparameters) of each row
    # Brings the rows that follow these units in line with their status, after any change of it.
    follow: Callable[[Session, Sequence[str]], None]


def _job_follows(session: Session, job_ids: Sequence[str]) -> None:
    """A job's status is its row's alone; the end of one is told to its owner's webhooks."""
    webhooks.ended(session, Job, job_ids)


def _trials_follow(session: Session, chunk_ids: Sequence[str]) -> None:
    """The trials of these chunks that have not ended take their chunk's status and error; their
    sweeps settle. (A chunk's run writes each trial's own outcome beside its finish.) A running
    search's trials run a batch at a time: those past its batch stay queued."""
    if not chunk_ids:
        return
    chunks = session.execute(
        select(
            SweepChunk.sweep_id,
            SweepChunk.lo,
            SweepChunk.hi,
            SweepChunk.status,
            SweepChunk.error_code,
            SweepChunk.error_message,
            Sweep.search,
        )
        .join(Sweep, Sweep.id == SweepChunk.sweep_id)
        .where(SweepChunk.id.in_(chunk_ids))
    ).all()
    for sweep_id, lo, hi, status, error_code, error_message, search in chunks:
        waiting = in_chunk(sweep_id, lo, hi) & Trial.status.in_(ACTIVE)
        if search is not None and status == Status.RUNNING:
            first = session.scalar(select(func.min(Trial.index)).where(waiting))
            hi = min(hi, first + search["batch"]) if first is not None else hi
            waiting = in_chunk(sweep_id, lo, hi) & Trial.status.in_(ACTIVE)
        session.execute(
            update(Trial).where(waiting).values(status=status, error_code=error_code, error_message=error_message)
        )
    for sweep_id in sorted({chunk.sweep_id for chunk in chunks}):
        settle_sweep(session=session, sweep_id=sweep_id)


_UNITS = {
    "job": _Unit(Job, select(Job.id, Job.hyperparameters), _job_follows),
    "swc": _Unit(
        SweepChunk,
        select(SweepChunk.id, Sweep.hyperparameters).join(Sweep, Sweep.id == SweepChunk.sweep_id),
        _trials_follow,
    ),
}
_LEASED = [unit.table for unit in _UNITS.values()]


def table_of(run_id: str) -> Table:
    """The table of a unit of work, from its id's prefix."""
    return _unit_of(run_id).table


def _unit_of(run_id: str) -> _Unit:
    return _UNITS[run_id.split("_", 1)[0]]


def get_job(*, session: Session, owner: str, job_id: str) -> Job:
    """The owner's job, or NotFound (also for another owner's job)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def get_sweep(*, session: Session, owner: str, sweep_id: str) -> Sweep:
    """The owner's sweep, or NotFound (also for another owner's sweep)."""
    sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return sweep


@dataclass(frozen=True)
class _RunStatements:
    """A run's claim, beat and finish, built once per table with bound parameters, not on each
    call: they are the statements every run executes. The columns a beat or a finish sets
    beside these come with the parameters."""

    claim: Update
    beat: Update
    finish: Update


@cache
def _statements(table: type[Job] | type[SweepChunk]) -> _RunStatements:
    t = core_table(table)
    current = (t.c.id == bindparam("run")) & (t.c.status == Status.RUNNING) & (t.c.attempts == bindparam("attempt"))
    lease = db_time(bindparam("lease", type_=Float()))
    return _RunStatements(
        claim=update(t)
        .where(t.c.id == bindparam("run"), t.c.status == Status.QUEUED)
        .values(
            status=Status.RUNNING,
            attempts=t.c.attempts + 1,
            started_at=func.coalesce(t.c.started_at, bindparam("now", type_=t.c.started_at.type)),
            lease_expires_at=lease,
        )
        .returning(t.c.attempts),
        beat=update(t).where(current).values(lease_expires_at=lease).returning(t.c.cancel_requested),
        finish=update(t).where(current).values(lease_expires_at=None).returning(*t.c),
    )


def _write(session: Session, statement: Any, parameters: dict[str, Any]) -> Result[Any]:
    """Execute a run's UPDATE (claim, heartbeat, finish), a Core statement the ORM does not
    match against the objects the session holds: a run's own sessions hold none. Whatever a
    caller's session does hold is expired instead, so that it reads its rows again rather than
    keep what they were."""
    result = session.execute(statement, parameters)
    session.expire_all()
    return result


def claim(*, session: Session, run_id: str, lease_seconds: float) -> int | None:
    """queued -> running with a lease; the attempt's number, or None when the run is gone, cancelled or taken."""
    unit = _unit_of(run_id)
    parameters = {"run": run_id, "now": utcnow(), "lease": lease_seconds}
    attempt: int | None = _write(session, _statements(unit.table).claim, parameters).scalar_one_or_none()
    if attempt is not None and attempt > 1:
        # The live history an earlier attempt wrote under the run's id (a job's: a chunk writes
        # its trials' under its sweep's, at its end): this attempt writes it again from epoch 0.
        results.remove_histories(session, run_id)
    if attempt is not None:
        unit.follow(session, [run_id])
    session.commit()
    return attempt


def in_chunk(sweep_id: str, lo: int, hi: int) -> ColumnElement[bool]:
    """The trials [lo, hi) of a sweep."""
    return (Trial.sweep_id == sweep_id) & (Trial.index >= lo) & (Trial.index < hi)


def heartbeat(
    *,
    session: Session,
    run_id: str,
    attempt: int,
    lease_seconds: float,
    segments: Sequence[results.Segment] = (),
    **progress: Any,
) -> bool | None:
    """Extend the lease and record progress (columns of the run's table, and the loss history's
    new segments); returns whether a cancel was asked, None if this attempt is stale."""
    flag = renew(session=session, run_id=run_id, attempt=attempt, lease_seconds=lease_seconds, **progress)
    if flag is not None and segments:
        # A beat whose commit went through though its answer was lost sent these epochs already.
        results.remove_histories(session, run_id, from_epoch=segments[0]["first_epoch"])
        results.insert_histories(session, segments)
    session.commit()
    return flag


def renew(*, session: Session, run_id: str, attempt: int, lease_seconds: float, **progress: Any) -> bool | None:
    """A heartbeat's UPDATE, not committed: the caller writes what the attempt holding the run may
    write beside it (rolled back when this returns None, the attempt stale); whether a cancel was asked."""
    beat = _statements(table_of(run_id)).beat
    flag: bool | None = _write(
        session, beat, {"run": run_id, "attempt": attempt, "lease": lease_seconds, **progress}
    ).scalar_one_or_none()
    return flag


def next_batch(*, session: Session, chunk_id: str) -> None:
    """A running search's next batch of trials runs (the one before it stored its outcomes)."""
    _trials_follow(session, [chunk_id])


def finish(*, session: Session, run_id: str, attempt: int, status: Status, **values: Any) -> dict[str, Any] | None:
    """running -> succeeded | failed | cancelled, by the current attempt only; the run's row as
    it ended ({column: value}), None if stale.

    values: the other columns to set (result, error, device, ...). Not committed: the caller
    commits it with what the run wrote beside it (or rolls all of it back when this returns None)."""
    unit = _unit_of(run_id)
    parameters = {"run": run_id, "attempt": attempt, "status": status, "finished_at": utcnow(), **values}
    done = _write(session, _statements(unit.table).finish, parameters).mappings().first()
    if done is None:
        return None
    unit.follow(session, [run_id])
    return dict(done)


def settle_sweep(*, session: Session, sweep_id: str) -> None:
    """The sweep's status as its chunks' sum: running once one of them runs; once none is queued
    or running, failed if a chunk failed (timeout, worker_lost, internal), else cancelled if one
    was cancelled, else succeeded."""
    # Lock the sweep's row first (held to commit), so the settles of one sweep take turns.
    # Without it, under PostgreSQL's READ COMMITTED, two chunks ending at once each still saw
    # the other running (not yet committed) and neither ended the sweep: it stayed running
    # forever. The one that waits reads the chunks afterwards, the other's end committed.
    # (SQLite renders no FOR UPDATE; its single writer serialises these transactions already.)
    session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())
    chunks = select(SweepChunk).where(SweepChunk.sweep_id == sweep_id)
    if session.scalar(select(exists(chunks.where(SweepChunk.status.in_(ACTIVE))))):
        session.execute(
            update(Sweep)
            .where(Sweep.id == sweep_id, Sweep.status == Status.QUEUED)
            .where(exists(chunks.where(SweepChunk.status == Status.RUNNING)))
            .values(status=Status.RUNNING, started_at=utcnow())
        )
        return
    failed = session.execute(
        chunks.with_only_columns(SweepChunk.error_code, SweepChunk.error_message)
        .where(SweepChunk.status == Status.FAILED)
        .order_by(SweepChunk.lo)
        .limit(1)
    ).first()
    cancelled = session.scalar(select(exists(chunks.where(SweepChunk.status == Status.CANCELLED))))
    status = Status.FAILED if failed else Status.CANCELLED if cancelled else Status.SUCCEEDED
    settled = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status.in_(ACTIVE))
        .values(
            status=status,
            finished_at=utcnow(),
            error_code=failed.error_code if failed else None,
            error_message=failed.error_message if failed else None,
        )
        .returning(Sweep.id)
    )
    webhooks.ended(session, Sweep, list(settled.scalars()))


def cancel(*, session: Session, owner: str, job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is flagged and stops within a second."""
    mine = (Job.id == job_id) & (Job.owner == owner)
    queued = update(Job).where(mine, Job.status == Status.QUEUED)
    running = update(Job).where(mine, Job.status == Status.RUNNING)
    cancelled = session.execute(queued.values(status=Status.CANCELLED, finished_at=utcnow()).returning(Job.id)).first()
    _job_follows(session, [cancelled.id] if cancelled else [])
    done = cancelled or session.execute(running.values(cancel_requested=True).returning(Job.id)).first()
    session.commit()
    job = get_job(session=session, owner=owner, job_id=job_id)
    if done is None:
        raise Conflict(f"job {job_id} is {job.status}: only a queued or running job can be cancelled")
    return job


def cancel_sweep(*, session: Session, owner: str, sweep_id: str) -> Sweep:
    """Queued chunks (and their trials) are cancelled at once; running ones are flagged and stop
    within a second, keeping their trials' partial results."""
    sweep = get_sweep(session=session, owner=owner, sweep_id=sweep_id)
    if sweep.status not in ACTIVE:
        raise Conflict(f"sweep {sweep_id} is {sweep.status}: only a queued or running sweep can be cancelled")
    now = utcnow()
    mine = SweepChunk.sweep_id == sweep_id
    cancelled = session.scalars(
        update(SweepChunk)
        .where(mine, SweepChunk.status == Status.QUEUED)
        .values(status=Status.CANCELLED, finished_at=now)
        .returning(SweepChunk.id)
    ).all()
    session.execute(update(SweepChunk).where(mine, SweepChunk.status == Status.RUNNING).values(cancel_requested=True))
    _trials_follow(session, cancelled)
    session.commit()
    session.refresh(sweep)
    return sweep


def _queue_of_runs(session: Session, ids: list[str]) -> list[tuple[str, str]]:
    """(id, queue) of these jobs and chunks, in the given order."""
    found = [session.execute(unit.hyperparameters.where(unit.table.id.in_(ids))).all() for unit in _UNITS.values()]
    hyperparameters: dict[str, dict[str, Any]] = dict(row for rows in found for row in rows)
    return [(run_id, queue_of(hyperparameters[run_id])) for run_id in ids]


def reap(*, session: Session, max_attempts: int) -> int:
    """Deal with running jobs and chunks whose lease expired: queued again, to be sent at once
    (undispatched), or ended; returns how many were queued again."""
    now = utcnow()
    requeued = 0
    lost = {"error_code": "worker_lost", "error_message": f"the run's worker was lost {max_attempts} times"}
    for unit in _UNITS.values():
        table = unit.table
        expired = update(table).where(table.status == Status.RUNNING, table.lease_expires_at < db_time())
        ended = {"finished_at": now, "lease_expires_at": None}
        cancelled = expired.where(table.cancel_requested).values(status=Status.CANCELLED, **ended)
        failed = expired.where(table.attempts >= max_attempts).values(status=Status.FAILED, **ended, **lost)
        again = expired.where(table.attempts < max_attempts).values(
            status=Status.QUEUED, lease_expires_at=None, dispatched_at=None
        )
        changed = [*session.scalars(cancelled.returning(table.id)), *session.scalars(failed.returning(table.id))]
        again_ids = list(session.scalars(again.returning(table.id)))
        requeued += len(again_ids)
        unit.follow(session, changed + again_ids)  # a chunk queued again has its trials wait again
    session.commit()
    return requeued


def undispatched(*, session: Session, wait_seconds: float, everything: bool = False) -> list[tuple[str, str]]:
    """(id, queue) of the queued jobs and chunks to send (again), oldest first: those never sent
    (queued again by reap), and those sent wait_seconds ago (doubling with each send, up to
    64x: a long backlog is not sent again and again); with everything, all queued runs (a
    local executor's pool starts empty)."""
    ids: list[str] = []
    now = session.execute(select(db_time())).scalar_one()
    for table in _LEASED:
        waiting = table.status == Status.QUEUED
        if not everything:
            waiting &= table.dispatched_at.is_(None) | (table.dispatched_at < db_time(-wait_seconds))
        rows = session.execute(
            select(table.id, table.dispatched_at, table.dispatches).where(waiting).order_by(table.seq)
        )
        ids += [
            run_id
            for run_id, sent, times in rows
            if everything or sent is None or (now - sent).total_seconds() >= wait_seconds * 2 ** min(times - 1, 6)
        ]
    return _queue_of_runs(session, ids)


def dispatched(*, session: Session, ids: Sequence[str]) -> None:
    """Record that these runs were sent now."""
    for table in _LEASED:
        session.execute(
            update(table)
            .where(table.id.in_(ids), table.status == Status.QUEUED)
            .values(dispatched_at=db_time(), dispatches=table.dispatches + 1)
        )
    session.commit()


# How many jobs and sweeps an owner has queued or running: built once, as every submit asks.
_COUNTS = [
    select(func.count()).where(t.c.owner == bindparam("owner"), t.c.status.in_(ACTIVE)).scalar_subquery()
    for t in (core_table(Job), core_table(Sweep))
]
_ACTIVE_RUNS = select(_COUNTS[0] + _COUNTS[1])


@cache
def _insert(table: type[Base]) -> Insert:
    """The INSERT of a new row of table, built once. A job or chunk is sent right after its
    submit commits: dispatched now, on the database's clock."""
    statement = insert(core_table(table))
    return statement.values(dispatched_at=db_time(), dispatches=1) if issubclass(table, Leased) else statement


def _values(row: Base) -> dict[str, Any]:
    """The columns set on a new row object (the others take their defaults)."""
    return {c.key: row.__dict__[c.key] for c in row.__table__.columns if c.key in row.__dict__}


def submit(
    *,
    session: Session,
    row: Submitted,
    max_active: int,
    extra: list[Any] | None = None,
    check: Callable[[], None] | None = None,
) -> tuple[Submitted, bool]:
    """Store a new queued job or sweep (with extra rows: an inline dataset, a sweep's chunks and
    trials) in one transaction; (row, created). Dispatch only after this returns.

    QuotaExceeded when the owner would have more than max_active queued or running jobs and
    sweeps, or when check() raises it (run with the rows inserted, before the commit);
    concurrent submits cannot overshoot: they are serialised per owner (PostgreSQL: an
    advisory lock; SQLite: the write lock its first INSERT takes).

    The rows go in by Core INSERTs whose values are ready before the first: the ORM's flush
    spent more Python than the rest of a submit, all of it holding SQLite's one writer lock
    (the objects stay as they were made, in no session)."""
    # The job or sweep first, its dataset next, a sweep's chunks and trials last. PostgreSQL: the
    # job's INSERT may wait for a worker whose finish updated the job holding the same
    # idempotency key (a retry's unique check waits for it), and that finish then waits for the
    # owner's usage row, which the dataset's INSERT locks: the dataset after, or they deadlock.
    ordered = sorted([row, *(extra or [])], key=lambda r: (not isinstance(r, Job | Sweep), not isinstance(r, Dataset)))
    batches = [(table, [_values(r) for r in rows]) for table, rows in groupby(ordered, key=type)]
    session.commit()  # end any read transaction: on SQLite the insert must begin the transaction

    def write() -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(row.owner, 0))))
        for table, values in batches:
            session.execute(_insert(table), values)
        active: int = session.scalar(_ACTIVE_RUNS, {"owner": row.owner}) or 0
        if active > max_active:
            message = f"{max_active} queued or running jobs and sweeps is the limit per owner; wait for some to finish"
            raise QuotaExceeded(message)
        if check is not None:
            check()

    try:
        return commit_once(session, row, write)
    except QuotaExceeded:
        session.rollback()
        raise


def withdraw(*, session: Session, row: Job | Sweep, dataset_sent_inline: bool) -> bool:
    """Delete a job or sweep whose dispatch failed, with the dataset sent inline with it; False,
    deleting nothing, when a worker claimed it already (the message did go out)."""
    if isinstance(row, Job):
        gone = session.execute(
            delete(Job).where(Job.id == row.id, Job.status == Status.QUEUED, Job.attempts == 0).returning(Job.seq)
        ).first()
    else:
        gone = session.execute(
            delete(Sweep).where(Sweep.id == row.id, Sweep.status == Status.QUEUED).returning(Sweep.seq)
        ).first()
        if gone is not None:
            session.execute(delete(SweepChunk).where(SweepChunk.sweep_id == row.id))
            session.execute(delete(Trial).where(Trial.sweep_id == row.id))
    if gone is not None and dataset_sent_inline:
        session.execute(delete(Dataset).where(Dataset.id == row.dataset_id))
    session.commit()
    return gone is not None
