"""sweeps keep their successive halving settings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:00:00.000000

A halving sweep's rungs, brackets and the progress it counts follow from its min_epochs,
reduction_factor and brackets; a trial's new status `pruned` needs no schema (a string).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("halving", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("halving")
