"""the bytes a job's or sweep's loss histories will store, reserved against the owner's quota

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 00:00:00.000000

Histories were counted once written: a 1-point dataset with a job of a million epochs stored
8 MB under a quota of 100 KB. A run's row now holds what its histories will store (trials x
epochs x 8 bytes, twice with a validation split), and the quota counts that of every queued
or running run. Runs queued before this reserve nothing (0), as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "sweeps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("history_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in ("jobs", "sweeps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("history_bytes")
