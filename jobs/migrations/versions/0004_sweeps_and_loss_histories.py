"""sweeps, their chunks and trials; loss histories as arrays

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:51:01.641648
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "histories",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("trial", sa.Integer(), nullable=False),
        sa.Column("loss", sa.LargeBinary(), nullable=False),
        sa.Column("validation_loss", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "trial", name=op.f("pk_histories")),
    )
    op.create_table(
        "sweep_chunks",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("sweep_id", sa.String(length=40), nullable=False),
        sa.Column("lo", sa.Integer(), nullable=False),
        sa.Column("hi", sa.Integer(), nullable=False),
        sa.Column("max_runtime_seconds", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("epochs_completed", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_sweep_chunks")),
        sa.UniqueConstraint("id", name=op.f("uq_sweep_chunks_id")),
    )
    with op.batch_alter_table("sweep_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweep_chunks_lease_expires_at"), ["lease_expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sweep_chunks_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_sweep_chunks_sweep_id"), ["sweep_id"], unique=False)

    op.create_table(
        "sweeps",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=True),
        sa.Column("random", sa.JSON(), nullable=True),
        sa.Column("objective", sa.String(length=32), nullable=False),
        sa.Column("max_runtime_seconds", sa.Float(), nullable=True),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("epochs_total", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_sweeps")),
        sa.UniqueConstraint("id", name=op.f("uq_sweeps_id")),
        sa.UniqueConstraint("owner", "idempotency_key", name=op.f("uq_sweeps_owner")),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweeps_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sweeps_owner"), ["owner"], unique=False)
        batch_op.create_index("ix_sweeps_owner_status", ["owner", "status"], unique=False)

    op.create_table(
        "trials",
        sa.Column("sweep_id", sa.String(length=40), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("objective", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("sweep_id", "index", name=op.f("pk_trials")),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index("ix_trials_sweep_id_objective", ["sweep_id", "objective"], unique=False)
    _move_histories_out_of_job_results()


def _move_histories_out_of_job_results() -> None:
    """A job's result kept its histories inline before; they go to the histories table."""
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("result", sa.JSON))
    histories = sa.table(
        "histories",
        sa.column("run_id", sa.String),
        sa.column("trial", sa.Integer),
        sa.column("loss", sa.LargeBinary),
        sa.column("validation_loss", sa.LargeBinary),
    )
    conn = op.get_bind()
    for job_id, result in conn.execute(sa.select(jobs.c.id, jobs.c.result).where(jobs.c.result.is_not(None))).all():
        loss, val = result.pop("loss_history", []), result.pop("validation_loss_history", None)
        conn.execute(
            histories.insert().values(
                run_id=job_id,
                trial=0,
                loss=np.asarray(loss, dtype="<f8").tobytes(),
                validation_loss=np.asarray(val, dtype="<f8").tobytes() if val is not None else None,
            )
        )
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(result=result))


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_sweep_id_objective")

    op.drop_table("trials")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index("ix_sweeps_owner_status")
        batch_op.drop_index(batch_op.f("ix_sweeps_owner"))
        batch_op.drop_index(batch_op.f("ix_sweeps_dataset_id"))

    op.drop_table("sweeps")
    with op.batch_alter_table("sweep_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweep_chunks_sweep_id"))
        batch_op.drop_index(batch_op.f("ix_sweep_chunks_status"))
        batch_op.drop_index(batch_op.f("ix_sweep_chunks_lease_expires_at"))

    op.drop_table("sweep_chunks")
    op.drop_table("histories")
