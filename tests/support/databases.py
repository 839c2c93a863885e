"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database on the machine's server."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database: "sqlite" (a file in folder) or "postgresql" (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'store.db'}"
        return
    name = f"tinytrain_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@contextmanager
def refusing_connections(url: str) -> Iterator[None]:
    """While inside, the PostgreSQL database at url refuses new connections, its open ones dropped
    on entry: the database is down as its clients see it."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
