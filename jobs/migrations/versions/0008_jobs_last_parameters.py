"""a job's parameters after its last stored epoch, for its live progress events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 00:00:00.000000

Each heartbeat (and the finish) writes the seven parameters beside epochs_completed in the same
UPDATE, so the dashboard can draw the fit while the job trains.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_parameters", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("last_parameters")
