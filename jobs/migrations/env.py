"""Alembic environment: migrates the database of the URL given by jobs.migrate."""

from alembic import context

from jobs.db import Base, make_engine

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    # render_as_batch: SQLite alters tables by copying them.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
