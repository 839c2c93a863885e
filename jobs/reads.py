"""The hot reads every request makes (the key, the object it names), without SQLAlchemy's execution layer.

SQLAlchemy compiles each statement once per dialect and its types convert every value, but
the statement runs on a pooled DBAPI connection directly: the execution layer costs more than
the query itself (docs/benchmarks.md has the figure). A row comes back as an instance of its
table's class, not attached to any session, so callers are typed as with the ORM.
"""

import functools
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Dialect, Select, bindparam, select
from sqlalchemy.exc import DBAPIError

from jobs.db import get_engine
from jobs.keys import digest
from jobs.tables import ApiKey, Dataset, Job, Sweep

AnySelect = Select[*tuple[Any, ...]]
Owned = TypeVar("Owned", Job, Dataset, Sweep)


@dataclass
class _Compiled:
    statement: AnySelect
    sql: str
    order: Sequence[str] | None  # the bind names in order, for a positional paramstyle
    binds: dict[str, Any]  # name: SQLAlchemy's bind processor or None
    # (name, SQLAlchemy's result processor or None); a processor depends on the type code the
    # driver reports, so they are made on the first execution
    columns: list[tuple[str, Any]] | None = None

    def row(self, dialect: Dialect, description: Sequence[Sequence[Any]], values: Sequence[Any]) -> dict[str, Any]:
        if self.columns is None:
            self.columns = [
                (c.name, c.type.dialect_impl(dialect).result_processor(dialect, d[1]))
                for c, d in zip(self.statement.selected_columns, description, strict=True)
            ]
        return {n: process(v) if process else v for (n, process), v in zip(self.columns, values, strict=True)}


@functools.cache
def _compiled(statement: AnySelect, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    binds = {name: b.type.dialect_impl(dialect).bind_processor(dialect) for name, b in compiled.binds.items()}
    return _Compiled(statement, compiled.string, compiled.positiontup, binds)


def fetch_one(statement: AnySelect, params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a SELECT built once at import, as {column: value}, or None.

    The driver's errors come out wrapped as SQLAlchemy's execution layer would wrap them (a
    psycopg.OperationalError as sqlalchemy.exc.OperationalError, ...), so that the API answers
    them as it answers the ORM's (503 for a database that is down); a connection the database
    dropped is discarded, not given back to the pool."""
    engine = get_engine()
    dialect = engine.dialect
    plan = _compiled(statement, dialect)
    values = {name: process(params[name]) if process else params[name] for name, process in plan.binds.items()}
    driver_error = dialect.loaded_dbapi.Error  # the DBAPI module's base class of its errors
    try:
        conn = engine.raw_connection()  # the pool's connect wraps its own errors, but not always
    except driver_error as exc:
        raise DBAPIError.instance(plan.sql, None, exc, driver_error, dialect=dialect) from exc
    with closing(conn):  # back to the pool, which ends the transaction
        try:
            cursor = conn.cursor()
            cursor.execute(plan.sql, tuple(values[name] for name in plan.order) if plan.order is not None else values)
            row = cursor.fetchone()
            description = cursor.description
            cursor.close()
        except driver_error as exc:
            dropped = dialect.is_disconnect(exc, conn.dbapi_connection, None)
            if dropped:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                plan.sql, None, exc, driver_error, hide_parameters=True, connection_invalidated=dropped, dialect=dialect
            ) from exc
    return plan.row(dialect, description, row) if row is not None else None


# Built once: every request runs these, and building a statement costs more than running it.
_OWNER_OF = select(ApiKey.owner).where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None))


def owner_of(key: str) -> str | None:
    """The owner of a valid, unrevoked key, else None."""
    row = fetch_one(_OWNER_OF, {"digest": digest(key)})
    return row["owner"] if row is not None else None


def _columns(table: type[Job] | type[Dataset] | type[Sweep]) -> AnySelect:
    # Every column but a dataset's points: a read of the object never needs them.
    return select(*[c for c in table.__table__.columns if c.name != "points"])


@functools.cache
def _owned_statement(table: type[Job] | type[Dataset] | type[Sweep]) -> AnySelect:
    return (
        _columns(table)
        .join(ApiKey, ApiKey.owner == table.owner)
        .where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None), table.id == bindparam("id"))
    )


@functools.cache
def _by_id_statement(table: type[Job] | type[Dataset] | type[Sweep]) -> AnySelect:
    return _columns(table).where(table.id == bindparam("id"))


def owned_by_id(table: type[Owned], object_id: str) -> Owned | None:
    """The object of table with this id (whose owner the caller checked already), else None."""
    row = fetch_one(_by_id_statement(table), {"id": object_id})
    return table(**row) if row is not None else None


def owned_by_key(table: type[Owned], object_id: str, key: str) -> Owned | None:
    """The object of table with this id if it belongs to the owner of this valid key, in one
    query; else None. One query instead of authenticate-then-fetch: reading a job is the
    hottest request."""
    row = fetch_one(_owned_statement(table), {"digest": digest(key), "id": object_id})
    return table(**row) if row is not None else None
