"""What an owner stores: the quota on it, deleting a job, and the retention purge of finished runs.

An owner's storage is their datasets (16 bytes a point: x and y as float64) and the loss
histories of their jobs and sweeps, kept up to date by the database as rows come and go
(tables.Usage). A dataset sent inline with a job or sweep (Dataset.inline) belongs to the
runs that use it: it goes with the last of them. An uploaded one stays until its owner deletes it.

The quota (TINYTRAIN_MAX_STORAGE_BYTES_PER_OWNER) counts what is stored and what queued and
running runs will store, known at submit: a run that fits is never stopped for room.
"""

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Integer, bindparam, delete, exists, func, literal, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from jobs.db import core_table, lock_owner, session_scope, utcnow
from jobs.errors import Conflict, QuotaExceeded
from jobs.idempotency import commit_once
from jobs.lifecycle import get_job
from jobs.results import remove_histories
from jobs.settings import get_settings
from jobs.status import ACTIVE
from jobs.tables import Dataset, History, Job, Sweep, SweepChunk, Trial, Usage

log = logging.getLogger(__name__)

POINT_BYTES = 16
PURGE_BATCH = 1000  # runs of each kind per pass: a backlog goes over several passes, in short transactions
# A two-key advisory lock: that key space never meets the one-key locks of lifecycle.submit.
_PURGE_LOCK = (0x74696E79, 12)


def dataset_bytes(n_points: int) -> int:
    return n_points * POINT_BYTES


def history_bytes(epochs: int, validation_fraction: float) -> int:
    """The most bytes a training's loss histories store: 8 an epoch, twice with a validation split."""
    return epochs * 8 * (2 if validation_fraction > 0 else 1)


# Built once: every submit reads it.
_USAGE, _HISTORIES = core_table(Usage), core_table(History)
_OWNER: BindParameter[str] = bindparam("owner")
_ACTIVE = union_all(
    *(
        select(t.c.id, t.c.history_bytes).where(t.c.owner == _OWNER, t.c.status.in_(ACTIVE))
        for t in (core_table(Job), core_table(Sweep))
    )
).subquery()
_USAGE_OF = select(_USAGE.c.bytes).where(_USAGE.c.owner == _OWNER)
_STORED = _USAGE_OF.scalar_subquery()
_RESERVED = select(func.sum(_ACTIVE.c.history_bytes)).scalar_subquery()
_SIZE = func.length(_HISTORIES.c.loss) + func.coalesce(func.length(_HISTORIES.c.validation_loss), 0)
_WRITTEN = select(func.sum(_SIZE)).where(_HISTORIES.c.run_id.in_(select(_ACTIVE.c.id))).scalar_subquery()
_COMMITTED = select(func.coalesce(_STORED, 0) + func.coalesce(_RESERVED, 0) - func.coalesce(_WRITTEN, 0))


def usage(session: Session, owner: str) -> int:
    """The bytes the owner stores now: datasets and loss histories (one row the database keeps)."""
    return int(session.scalar(_USAGE_OF, {"owner": owner}) or 0)


def committed(session: Session, owner: str) -> int:
    """The bytes the owner stores, and those their queued and running runs' histories will add:
    what each will store (Requested.history_bytes) less what it has written already."""
    return int(session.scalar(_COMMITTED, {"owner": owner}) or 0)


def check_room(session: Session, owner: str, adding: int, limit: int) -> None:
    """QuotaExceeded when what the owner stores and their runs will store, plus adding bytes, is
    over limit."""
    total = committed(session, owner) + adding
    if total > limit:
        raise QuotaExceeded(
            f"{limit} bytes of datasets and loss histories is the storage quota per owner, and this "
            f"would make {total} (with what queued and running jobs and sweeps will store); "
            "delete datasets, jobs or sweeps first"
        )


def store_dataset(*, session: Session, dataset: Dataset, limit: int) -> tuple[Dataset, bool]:
    """Store an uploaded dataset (from datasets.build); (dataset, created), idempotent by its key.

    QuotaExceeded, with nothing stored, when the owner's storage would pass limit. Counted inside
    the insert's transaction, under lock_owner: two uploads at once cannot both take the last room."""
    session.commit()  # end any read transaction: on SQLite the insert must begin the transaction
    lock_owner(session, dataset.owner)
    session.add(dataset)

    def write() -> None:
        session.flush()
        check_room(session, dataset.owner, 0, limit)

    try:
        return commit_once(session, dataset, write)
    except QuotaExceeded:
        session.rollback()
        raise


def drop_unused_inline(session: Session, dataset_ids: Iterable[str]) -> None:
    """Delete those of these datasets that were sent inline and that no job or sweep uses any more."""
    used = exists().where(Job.dataset_id == Dataset.id) | exists().where(Sweep.dataset_id == Dataset.id)
    session.execute(delete(Dataset).where(Dataset.id.in_(set(dataset_ids)), Dataset.inline, ~used))


def remove_job(*, session: Session, owner: str, job_id: str) -> None:
    """Delete a finished job with its result and histories, and its inline dataset if nothing else
    uses it; Conflict while it is queued or running, NotFound if the owner has no such job.

    One conditional DELETE decides: a job claimed at the same moment is running, and stays."""
    dataset_id = session.execute(
        delete(Job).where(Job.id == job_id, Job.owner == owner, Job.status.not_in(ACTIVE)).returning(Job.dataset_id)
    ).scalar_one_or_none()
    if dataset_id is None:
        job = get_job(session=session, owner=owner, job_id=job_id)
        raise Conflict(f"job {job_id} is {job.status}: cancel it first")
    remove_histories(session, job_id)
    drop_unused_inline(session, [dataset_id])
    session.commit()


def purge(session: Session, older_than: timedelta, batch: int = PURGE_BATCH) -> int:
    """Delete up to batch jobs and batch sweeps that finished more than older_than ago, with their
    histories (a sweep's chunks and trials too) and the inline datasets no remaining run uses;
    how many runs went. Queued and running runs are never touched."""
    if session.get_bind().dialect.name == "postgresql":
        # Every serve and worker process purges: one at a time, the others skip their turn.
        key = [literal(k, Integer) for k in _PURGE_LOCK]
        if not session.scalar(select(func.pg_try_advisory_xact_lock(*key))):
            return 0
    cutoff = utcnow() - older_than
    dataset_ids: list[str] = []
    removed = 0
    for table in (Job, Sweep):
        old = table.status.not_in(ACTIVE) & (table.finished_at < cutoff)
        ids = list(session.scalars(select(table.id).where(old).limit(batch)))
        if not ids:
            continue
        gone = session.execute(delete(table).where(table.id.in_(ids), old).returning(table.id, table.dataset_id)).all()
        run_ids = [run_id for run_id, _ in gone]
        session.execute(delete(History).where(History.run_id.in_(run_ids)))
        if table is Sweep:
            session.execute(delete(SweepChunk).where(SweepChunk.sweep_id.in_(run_ids)))
            session.execute(delete(Trial).where(Trial.sweep_id.in_(run_ids)))
        dataset_ids += [dataset_id for _, dataset_id in gone]
        removed += len(gone)
    drop_unused_inline(session, dataset_ids)
    session.commit()
    return removed


class _Schedule:
    """When this process purges next. A pass reads every finished run's finished_at: every reaper
    pass (a few seconds) would be too often for a retention of days."""

    def __init__(self) -> None:
        self.next_at = 0.0

    def due(self, interval: float) -> bool:
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = now + interval
        return True


_schedule = _Schedule()


def purge_expired() -> None:
    """One retention pass when TINYTRAIN_RETENTION_DAYS is set (the reaper calls this each pass);
    at most once a minute, or every tenth of the retention when that is shorter."""
    days = get_settings().retention_days
    if days is None:
        return
    retention = timedelta(days=days)
    if not _schedule.due(min(60.0, retention.total_seconds() / 10)):
        return
    with session_scope() as session:
        removed = purge(session, retention)
    if removed:
        log.info("retention: deleted %d jobs and sweeps that finished over %s ago", removed, retention)
