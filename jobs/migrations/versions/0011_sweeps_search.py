"""sweeps keep their model-based search settings, pruned trials their objective at the rung

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 00:00:00.000000

A search sweep's trials are asked batch by batch from its sampler, trials, seed, batch and
ranges and the trials stored before each batch (jobs/search.py). A pruned trial is told to the
sampler with its objective at the rung it reached, which its ranked objective (None) is not.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("search", sa.JSON(), nullable=True))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("rung_objective", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("rung_objective")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("search")
