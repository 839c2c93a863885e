"""each owner's stored bytes kept by the database; histories say whose they are

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 00:15:00.000000

The quota summed every dataset and history of the owner on each submit, a cost that grew
with everything the owner ever kept. Triggers now add and take away each row's bytes in
`usage` inside the transaction that writes the row, so the quota reads one row, exactly,
whatever path wrote it. Dataset and history rows are inserted and deleted, never updated.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bytes a row stores, written for the row NEW or OLD: a point is x and y as float64.
SIZES = {
    "datasets": "{row}.n_points * 16",
    "histories": "length({row}.loss) + coalesce(length({row}.validation_loss), 0)",
}


def _sqlite_triggers(table: str, size: str) -> list[str]:
    added, taken = size.format(row="NEW"), size.format(row="OLD")
    return [
        f"CREATE TRIGGER usage_{table}_insert AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO usage (owner, bytes) VALUES (NEW.owner, {added}) "
        "ON CONFLICT (owner) DO UPDATE SET bytes = bytes + excluded.bytes; END",
        f"CREATE TRIGGER usage_{table}_delete AFTER DELETE ON {table} BEGIN "
        f"UPDATE usage SET bytes = bytes - ({taken}) WHERE owner = OLD.owner; END",
    ]


def _postgresql_triggers(table: str, size: str) -> list[str]:
    added, taken = size.format(row="NEW"), size.format(row="OLD")
    return [
        f"CREATE FUNCTION usage_of_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'INSERT' THEN INSERT INTO usage (owner, bytes) VALUES (NEW.owner, {added}) "
        "ON CONFLICT (owner) DO UPDATE SET bytes = usage.bytes + EXCLUDED.bytes; "
        f"ELSE UPDATE usage SET bytes = bytes - ({taken}) WHERE owner = OLD.owner; END IF; "
        "RETURN NULL; END $$",
        f"CREATE TRIGGER usage_{table} AFTER INSERT OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION usage_of_{table}()",
    ]


def upgrade() -> None:
    with op.batch_alter_table("histories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=100), nullable=False, server_default=""))
    op.execute(
        "UPDATE histories SET owner = coalesce("
        "(SELECT owner FROM jobs WHERE jobs.id = histories.run_id), "
        "(SELECT owner FROM sweeps WHERE sweeps.id = histories.run_id), '')"
    )
    with op.batch_alter_table("histories", schema=None) as batch_op:
        batch_op.alter_column("owner", server_default=None)
    op.create_table(
        "usage",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_usage")),
    )
    stored = " UNION ALL ".join(
        f"SELECT owner, {size.format(row=table)} AS b FROM {table}" for table, size in SIZES.items()
    )
    op.execute(f"INSERT INTO usage (owner, bytes) SELECT owner, sum(b) FROM ({stored}) AS rows GROUP BY owner")
    triggers = _postgresql_triggers if op.get_bind().dialect.name == "postgresql" else _sqlite_triggers
    for table, size in SIZES.items():
        for statement in triggers(table, size):
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in SIZES:
        if postgresql:
            op.execute(f"DROP TRIGGER usage_{table} ON {table}")
            op.execute(f"DROP FUNCTION usage_of_{table}()")
        else:
            op.execute(f"DROP TRIGGER usage_{table}_insert")
            op.execute(f"DROP TRIGGER usage_{table}_delete")
    op.drop_table("usage")
    with op.batch_alter_table("histories", schema=None) as batch_op:
        batch_op.drop_column("owner")
