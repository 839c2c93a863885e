"""Which Celery workers are alive: each writes its row every reaper pass (a few seconds), so
serve can tell whether any worker reads a queue (device=cuda waits forever without one)."""

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from jobs.db import db_time
from jobs.tables import Worker

# A worker not heard from this long is gone: several of its passes (at most 5 s apart) missed.
GONE_SECONDS = 30.0


def alive(*, session: Session, name: str, queues: list[str]) -> None:
    """Record that the worker called name, reading these queues, is alive now."""
    values = {"queues": ",".join(queues), "seen_at": db_time()}
    updated = session.execute(update(Worker).where(Worker.name == name).values(**values).returning(Worker.name))
    if updated.first() is None:
        session.execute(insert(Worker).values(name=name, **values))
    # Rows of workers long gone (killed, never said goodbye) would only grow.
    session.execute(delete(Worker).where(Worker.seen_at < db_time(-24 * 3600)))
    session.commit()


def gone(*, session: Session, name: str) -> None:
    session.execute(delete(Worker).where(Worker.name == name))
    session.commit()


def reading(*, session: Session, queue: str) -> bool:
    """Whether a live worker reads queue."""
    live = select(Worker.queues).where(Worker.seen_at > db_time(-GONE_SECONDS))
    return any(queue in queues.split(",") for queues in session.scalars(live))
