"""Database engine, sessions and the tables' metadata (SQLite by default, PostgreSQL in compose)."""

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Dialect, Engine, MetaData, Select, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

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


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for url; SQLite gets WAL and a busy timeout, so api and workers can share the file."""
    if url.startswith("sqlite"):
        # Pooled, not opened per request: a new SQLite connection costs a WAL lock.
        args = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=args, pool_size=16, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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


class Record(SimpleNamespace):
    """A row read by fetch_one: its columns as attributes, as the ORM's objects have them."""


AnySelect = Select[*tuple[Any, ...]]


@dataclass
class _Compiled:
    statement: AnySelect
    sql: str
    order: Sequence[str] | None  # the bind names in order, for a positional paramstyle
    binds: dict[str, Any]  # name: SQLAlchemy's bind processor or None
    # (name, SQLAlchemy's result processor or None); a processor depends on the type code the
    # driver reports, so they are made on the first execution
    columns: list[tuple[str, Any]] | None = None

    def row(self, dialect: Dialect, description: Sequence[Sequence[Any]], values: Sequence[Any]) -> "Record":
        if self.columns is None:
            self.columns = [
                (c.name, c.type.dialect_impl(dialect).result_processor(dialect, d[1]))
                for c, d in zip(self.statement.selected_columns, description, strict=True)
            ]
        return Record(**{n: process(v) if process else v for (n, process), v in zip(self.columns, values, strict=True)})


@cache
def _compiled(statement: AnySelect, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    binds = {name: b.type.dialect_impl(dialect).bind_processor(dialect) for name, b in compiled.binds.items()}
    return _Compiled(statement, compiled.string, compiled.positiontup, binds)


def fetch_one(statement: AnySelect, params: dict[str, Any]) -> Record | None:
    """The first row of a SELECT built once at import, run on a pooled DBAPI connection.

    For the reads every request makes (the key, the job): SQLAlchemy compiles the statement
    once per dialect and its types convert each value, but its execution layer, which costs
    more than the query itself, is skipped (a job read serves 2,800 instead of 2,100 requests
    per second, benchmarks/service.py)."""
    dialect = get_engine().dialect
    plan = _compiled(statement, dialect)
    values = {name: process(params[name]) if process else params[name] for name, process in plan.binds.items()}
    with closing(get_engine().raw_connection()) as conn:  # back to the pool, which ends the transaction
        cursor = conn.cursor()
        cursor.execute(plan.sql, tuple(values[name] for name in plan.order) if plan.order is not None else values)
        row = cursor.fetchone()
        description = cursor.description
        cursor.close()
    return plan.row(dialect, description, row) if row is not None else None
