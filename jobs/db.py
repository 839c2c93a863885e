"""Database engine, sessions and the tables' metadata (SQLite by default, PostgreSQL in compose)."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    Float,
    MetaData,
    Table,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from jobs.settings import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def core_table(entity: type[Base]) -> Table:
    """An entity's table, for Core statements built once and run often (a run's own writes):
    they skip the ORM's work on each execution."""
    return Base.metadata.tables[entity.__tablename__]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite keeps no zone), always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class db_time(FunctionElement[datetime]):
    """The database's clock plus `seconds`, as the time columns store it (naive UTC).

    Leases are written and compared on this one clock: a worker whose own clock is off must
    not have its live run reaped, nor keep a dead one."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: float | ColumnElement[float] = 0.0) -> None:
        super().__init__(seconds if isinstance(seconds, ColumnElement) else literal(float(seconds), Float()))


@compiles(db_time, "postgresql")
def _db_time_postgresql(element: db_time, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp, not now(): now() stands still for the whole transaction.
    return f"(timezone('UTC', clock_timestamp()) + make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(db_time, "sqlite")
def _db_time_sqlite(element: db_time, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLAlchemy stores SQLite times as text with microseconds: the same form compares in order.
    seconds = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.6f seconds', {seconds})) || '000')"


def _json(value: Any) -> str:
    # NaN and Infinity are not JSON: PostgreSQL refuses them, and no client could read them back.
    return json.dumps(value, allow_nan=False)


def make_engine(url: str) -> Engine:
    """An engine for url; SQLite gets WAL and a busy timeout, so api and workers can share the file."""
    if url.startswith("sqlite"):
        # Pooled, not opened per request: a new SQLite connection costs a WAL lock.
        args = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=args, pool_size=16, max_overflow=16, json_serializer=_json)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=_json)


@lru_cache
def get_engine() -> Engine:
    """The process's engine for TINYTRAIN_DATABASE_URL."""
    return make_engine(get_settings().database_url)


@lru_cache
def _sessions() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def new_session() -> Session:
    return _sessions()()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def lock_owner(session: Session, owner: str) -> None:
    """Make the owner's writes that a quota decides take turns, to the end of this transaction.

    PostgreSQL: the advisory lock lifecycle.submit takes too. SQLite has one writer: its first
    INSERT takes the lock, so the caller must insert before it counts."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(owner, 0))))
