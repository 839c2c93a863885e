"""dispatch times of runs, live workers, history segments, inline datasets

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "sweep_chunks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(), nullable=True))
            batch_op.add_column(sa.Column("dispatches", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inline", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Uploads always kept their request's hash; a dataset sent inline with a job never had one.
    op.execute("UPDATE datasets SET inline = (request_hash IS NULL)")
    with op.batch_alter_table("histories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_constraint("pk_histories", type_="primary")
        batch_op.create_primary_key("pk_histories", ["run_id", "trial", "first_epoch"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queues", sa.String(length=200), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.execute("DELETE FROM histories WHERE first_epoch > 0")  # a running job's: it will write them again
    with op.batch_alter_table("histories", schema=None) as batch_op:
        batch_op.drop_constraint("pk_histories", type_="primary")
        batch_op.create_primary_key("pk_histories", ["run_id", "trial"])
        batch_op.drop_column("first_epoch")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("inline")
    for table in ("jobs", "sweep_chunks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("dispatches")
            batch_op.drop_column("dispatched_at")
