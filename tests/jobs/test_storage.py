"""jobs/storage.py on both databases: what the quota counts, and the retention purge's batches."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from jobs import datasets, migrate, results, storage, tables
from jobs.db import make_engine, utcnow
from jobs.errors import QuotaExceeded
from jobs.status import Status
from jobs.tables import Dataset, History, Job, Sweep, SweepChunk, Trial


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate.upgrade(database_url)
    made = make_engine(database_url)
    yield made
    made.dispose()


def dataset(owner: str, n: int, inline: bool) -> Dataset:
    row = datasets.build(owner=owner, x=np.arange(float(n)), y=np.zeros(n), name=None)
    row.inline = inline
    return row


def job(owner: str, dataset_id: str, status: Status, finished_ago: float | None) -> Job:
    return Job(
        id=tables.new_id("job"),
        owner=owner,
        status=status,
        dataset_id=dataset_id,
        hyperparameters={"epochs": 3},
        attempts=1,
        cancel_requested=False,
        epochs_completed=0,
        finished_at=utcnow() - timedelta(seconds=finished_ago) if finished_ago is not None else None,
    )


def sweep(owner: str, dataset_id: str, finished_ago: float) -> tuple[Sweep, list[Any]]:
    row = Sweep(
        id=tables.new_id("sw"),
        owner=owner,
        status=Status.SUCCEEDED,
        dataset_id=dataset_id,
        hyperparameters={},
        objective="final_loss",
        trials_total=2,
        epochs_total=6,
        finished_at=utcnow() - timedelta(seconds=finished_ago),
    )
    chunk = SweepChunk(id=tables.new_id("swc"), sweep_id=row.id, lo=0, hi=2, status=Status.SUCCEEDED)
    trials = [Trial(sweep_id=row.id, index=k, hyperparameters={}, status=Status.SUCCEEDED) for k in range(2)]
    return row, [chunk, *trials, *(history(row, k, 3, None) for k in range(2))]


def history(run: Job | Sweep, trial: int, epochs: int, validation: int | None) -> History:
    val = np.ones(validation).tobytes() if validation is not None else None
    return History(owner=run.owner, run_id=run.id, trial=trial, loss=np.ones(epochs).tobytes(), validation_loss=val)


def test_usage_counts_the_owners_datasets_and_histories_only(engine: Engine) -> None:
    with Session(engine) as s:
        assert storage.usage(s, "ann") == 0
        mine, theirs = dataset("ann", 10, inline=False), dataset("bob", 1000, inline=False)
        done = job("ann", mine.id, Status.SUCCEEDED, 0)
        other = job("bob", theirs.id, Status.SUCCEEDED, 0)
        swept, extra = sweep("ann", mine.id, 0)
        s.add_all([mine, theirs, done, other, swept, *extra])
        s.add_all([history(done, 0, 7, 3), history(other, 0, 500, None)])
        s.commit()
        # 10 points; the job's 7 + 3 entries; the sweep's two trials of 3: 8 bytes an entry.
        assert storage.usage(s, "ann") == 16 * 10 + 8 * (7 + 3) + 8 * 6
        assert storage.usage(s, "bob") == 16 * 1000 + 8 * 500
        storage.check_room(s, "ann", 1000 - 288, 1000)
        with pytest.raises(QuotaExceeded, match="1000 bytes .* this would make 1001"):
            storage.check_room(s, "ann", 1000 - 287, 1000)


def test_purge_deletes_old_finished_runs_in_batches_and_never_an_active_or_recent_one(engine: Engine) -> None:
    with Session(engine) as s:
        shared, alone, uploaded = dataset("ann", 3, True), dataset("ann", 3, True), dataset("ann", 3, False)
        old = [job("ann", shared.id, Status.SUCCEEDED, 3600) for _ in range(4)]
        old += [job("ann", alone.id, Status.FAILED, 3600), job("ann", uploaded.id, Status.CANCELLED, 3600)]
        kept = [
            job("ann", shared.id, Status.SUCCEEDED, 1),  # recent: keeps the shared dataset
            job("ann", shared.id, Status.RUNNING, None),
            job("ann", shared.id, Status.QUEUED, None),
        ]
        old_sweep, extra = sweep("ann", alone.id, 3600)
        s.add_all([shared, alone, uploaded, *old, *kept, old_sweep, *extra])
        s.add_all([history(j, 0, 3, None) for j in [*old, *kept]])
        s.commit()

        assert [storage.purge(s, timedelta(minutes=1), batch=4) for _ in range(3)] == [5, 2, 0]
        assert set(s.scalars(select(Job.id))) == {j.id for j in kept}
        assert set(s.scalars(select(History.run_id))) == {j.id for j in kept}
        assert set(s.scalars(select(Dataset.id))) == {shared.id, uploaded.id}
        for table in (Sweep, SweepChunk, Trial):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table
        assert storage.usage(s, "ann") == recount(s, "ann") == 16 * 6 + 8 * 3 * 3


def recount(session: Session, owner: str) -> int:
    """What the owner stores, summed from the rows themselves."""
    points = session.scalar(select(func.coalesce(func.sum(Dataset.n_points), 0)).where(Dataset.owner == owner))
    size = func.length(History.loss) + func.coalesce(func.length(History.validation_loss), 0)
    histories = session.scalar(select(func.coalesce(func.sum(size), 0)).where(History.owner == owner))
    return int(points or 0) * storage.POINT_BYTES + int(histories or 0)


def test_usage_follows_every_insert_and_delete_of_datasets_and_histories(engine: Engine) -> None:
    with Session(engine) as s:
        kept, sent = dataset("ann", 5, inline=False), dataset("ann", 7, inline=True)
        done = job("ann", sent.id, Status.SUCCEEDED, 0)
        s.add_all([kept, sent, done, history(done, 0, 4, 2)])
        s.commit()
        assert storage.usage(s, "ann") == recount(s, "ann") == 16 * 12 + 8 * 6
        results.store_histories(s, [results.segment("ann", done.id, 0, 0, np.ones(9), None)])  # replaced
        s.commit()
        assert storage.usage(s, "ann") == recount(s, "ann") == 16 * 12 + 8 * 9
        storage.remove_job(session=s, owner="ann", job_id=done.id)  # its history and inline dataset go
        s.commit()
        assert storage.usage(s, "ann") == recount(s, "ann") == 16 * 5
        datasets.remove(session=s, owner="ann", dataset_id=kept.id)
        assert storage.usage(s, "ann") == recount(s, "ann") == 0
        s.add(dataset("ann", 3, inline=False))
        s.rollback()  # what is rolled back was never counted
        assert storage.usage(s, "ann") == 0


def test_the_migration_counts_what_was_stored_before_it(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from jobs.migrate import alembic_config

    command.upgrade(alembic_config(database_url), "0005")
    made = make_engine(database_url)
    try:
        with made.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO datasets (id, owner, n_points, x_min, x_max, y_min, y_max, sha256, points, "
                    "created_at, inline) "
                    "VALUES ('ds_1', 'ann', 10, 0, 1, 0, 1, '', :blob, '2026-01-01', false)"
                ),
                {"blob": bytes(160)},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, owner, status, dataset_id, hyperparameters, attempts, cancel_requested, "
                    "epochs_completed, created_at, dispatches) "
                    "VALUES ('job_1', 'ann', 'succeeded', 'ds_1', '{}', 1, false, 3, '2026-01-01', 1)"
                )
            )
            conn.execute(
                text("INSERT INTO histories (run_id, trial, first_epoch, loss) VALUES ('job_1', 0, 0, :loss)"),
                {"loss": bytes(24)},
            )
        migrate.upgrade(database_url)
        with Session(made) as s:
            assert s.scalar(select(History.owner)) == "ann"
            assert storage.usage(s, "ann") == recount(s, "ann") == 16 * 10 + 24
    finally:
        made.dispose()
