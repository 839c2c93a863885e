"""The job store and lifecycle on both databases: every transition is one conditional UPDATE."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, undefer

from jobs import datasets, db, keys, lifecycle, migrate, reads, tables
from jobs.db import get_engine, make_engine, new_session, utcnow
from jobs.errors import Conflict, IdempotencyMismatch, NotFound, QuotaExceeded
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Dataset, Job

T = TypeVar("T")


def _reset_process_engine() -> None:
    get_engine().dispose()
    for cached in (get_settings, get_engine, db._sessions):
        cached.cache_clear()


@pytest.fixture
def session_factory(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Session]]:
    """Sessions of the process's engine (what the service uses), pointed at database_url."""
    migrate.upgrade(database_url)
    monkeypatch.setenv("TINYTRAIN_DATABASE_URL", database_url)
    _reset_process_engine()
    yield new_session
    _reset_process_engine()


def pending(owner: str = "ann", key: str | None = None, request_hash: str = "h") -> tuple[Job, Dataset]:
    """A new queued job and the dataset sent with it, not yet stored."""
    dataset = datasets.build(owner=owner, x=np.array([0.0, 1.0, 2.0]), y=np.array([1.0, 0.0, 1.0]), name=None)
    job = Job(
        id=tables.new_id("job"),
        owner=owner,
        name=None,
        status=Status.QUEUED,
        dataset_id=dataset.id,
        hyperparameters={"epochs": 3},
        attempts=0,
        cancel_requested=False,
        epochs_completed=0,
        idempotency_key=key,
        request_hash=request_hash,
    )
    return job, dataset


def concurrently(fn: Callable[[], T], n: int) -> list[T]:
    """fn's results when n threads call it at once (each with its own session)."""
    with ThreadPoolExecutor(n) as pool:
        return [f.result() for f in [pool.submit(fn) for _ in range(n)]]


def new_job(session: Session, owner: str = "ann", key: str | None = None, request_hash: str = "h") -> Job:
    job, dataset = pending(owner, key, request_hash)
    return lifecycle.submit(session=session, row=job, max_active=100, extra=[dataset])[0]


def test_migrations_create_the_schema_and_datasets_round_trip(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        x, y = np.linspace(-1, 1, 5), np.arange(5.0)
        d, created = datasets.create(session=s, dataset=datasets.build(owner="ann", x=x, y=y, name="five"))
        assert created and d.n_points == 5 and d.x_min == -1 and d.y_max == 4
        loaded = datasets.load_points(session=s, dataset_id=d.id)
        assert loaded is not None and np.array_equal(loaded[0], x) and np.array_equal(loaded[1], y)
        with pytest.raises(NotFound):
            datasets.get(session=s, owner="bob", dataset_id=d.id)


def test_claim_heartbeat_finish_by_the_current_attempt_only(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        job = new_job(s)
        assert lifecycle.claim(session=s, run_id=job.id, lease_seconds=30) == 1
        assert lifecycle.claim(session=s, run_id=job.id, lease_seconds=30) is None  # taken
        beat: dict[str, Any] = {"lease_seconds": 30, "epochs_completed": 1, "last_loss": 0.5}
        assert lifecycle.heartbeat(session=s, run_id=job.id, attempt=1, **beat) is False
        # The lease runs out: the reaper queues it again and attempt 2 claims it.
        s.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
        assert lifecycle.reap(session=s, max_attempts=3) == 1
        # Queued again, it is to be sent at once (it was sent long ago, at its submit).
        assert lifecycle.undispatched(session=s, wait_seconds=3600) == [(job.id, "train")]
        assert lifecycle.claim(session=s, run_id=job.id, lease_seconds=30) == 2
        # The stale attempt 1 wakes up: it can neither report nor finish.
        assert lifecycle.heartbeat(session=s, run_id=job.id, attempt=1, **beat) is None

        def finish(attempt: int, result: dict[str, bool]) -> dict[str, Any] | None:
            done = lifecycle.finish(session=s, run_id=job.id, attempt=attempt, status=Status.SUCCEEDED, result=result)
            s.commit()
            return done

        assert finish(1, {"stale": True}) is None
        ended = finish(2, {"fresh": True})  # the row as it ended
        assert ended is not None
        assert (ended["id"], ended["status"], ended["attempts"], ended["result"]) == (
            job.id,
            Status.SUCCEEDED,
            2,
            {"fresh": True},
        )
        assert finish(2, {"again": True}) is None  # finished once
        done = lifecycle.get_job(session=s, owner="ann", job_id=job.id)
        s.refresh(done)
        assert (done.status, done.attempts, done.result) == (Status.SUCCEEDED, 2, {"fresh": True})


def test_reaper_fails_a_job_after_max_attempts(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        job = new_job(s)
        for attempt in (1, 2, 3):
            assert lifecycle.claim(session=s, run_id=job.id, lease_seconds=-1) is not None  # expired at once
            assert lifecycle.reap(session=s, max_attempts=3) == (1 if attempt < 3 else 0)
        s.expire_all()
        done = lifecycle.get_job(session=s, owner="ann", job_id=job.id)
        assert (done.status, done.error_code, done.attempts) == (Status.FAILED, "worker_lost", 3)


def test_cancel_queued_running_and_finished(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        queued = new_job(s)
        assert lifecycle.cancel(session=s, owner="ann", job_id=queued.id).status == Status.CANCELLED
        assert lifecycle.claim(session=s, run_id=queued.id, lease_seconds=30) is None  # never starts
        running = new_job(s)
        lifecycle.claim(session=s, run_id=running.id, lease_seconds=30)
        assert lifecycle.cancel(session=s, owner="ann", job_id=running.id).status == Status.RUNNING
        assert lifecycle.heartbeat(session=s, run_id=running.id, attempt=1, lease_seconds=30) is True
        with pytest.raises(Conflict, match="cancelled"):
            lifecycle.cancel(session=s, owner="ann", job_id=queued.id)
        with pytest.raises(NotFound):
            lifecycle.cancel(session=s, owner="bob", job_id=running.id)


def test_dataset_delete_is_refused_while_a_job_uses_it(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        job = new_job(s)
        with pytest.raises(Conflict):
            datasets.remove(session=s, owner="ann", dataset_id=job.dataset_id)
        lifecycle.cancel(session=s, owner="ann", job_id=job.id)
        datasets.remove(session=s, owner="ann", dataset_id=job.dataset_id)
        assert datasets.load_points(session=s, dataset_id=job.dataset_id) is None


def test_idempotency_key_returns_the_first_job_even_under_concurrency(session_factory) -> None:  # type: ignore[no-untyped-def]
    def submit() -> tuple[str, bool]:
        with session_factory() as s:
            job, dataset = pending(key="k1", request_hash="same")
            stored, created = lifecycle.submit(session=s, row=job, max_active=100, extra=[dataset])
            return stored.id, created

    results = concurrently(submit, 8)
    assert len({job_id for job_id, _ in results}) == 1 and sum(created for _, created in results) == 1
    with session_factory() as s, pytest.raises(IdempotencyMismatch):
        new_job(s, key="k1", request_hash="other")
    with session_factory() as s:  # keys are per owner
        assert new_job(s, owner="bob", key="k1").owner == "bob"


def test_keys_are_stored_hashed_and_revocable(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        key = keys.create(session=s, owner="ann")
        assert reads.owner_of(key) == "ann"
        assert reads.owner_of(key + "x") is None
        stored = keys.list_keys(session=s)
        assert all(key not in (k.key_hash, k.prefix) for k in stored)
        assert keys.revoke(session=s, prefix=key[:10]) == 1
        assert reads.owner_of(key) is None


def test_owned_reads_match_the_orm_and_check_the_key(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        ann, bob = keys.create(session=s, owner="ann"), keys.create(session=s, owner="bob")
        job = new_job(s)
        lifecycle.claim(session=s, run_id=job.id, lease_seconds=30)
        result = {"parameters": {"w11": 0.5}, "loss_history": [1.0, 0.5]}
        s.execute(update(Job).where(Job.id == job.id).values(result=result))
        s.commit()
        stored = s.scalar(select(Job).where(Job.id == job.id).options(undefer(Job.result)))
    read = reads.owned_by_key(Job, job.id, ann)
    assert read is not None and stored is not None
    # The same values and types as the ORM's: JSON decoded, datetimes timezone-aware.
    columns = [c.name for c in Job.__table__.columns]
    assert {c: getattr(read, c) for c in columns} == {c: getattr(stored, c) for c in columns}
    assert read.result == result and read.started_at is not None and read.started_at.tzinfo is not None
    assert read.finished_at is None
    assert reads.owned_by_key(Job, job.id, bob) is None  # another owner's
    assert reads.owned_by_key(Job, "job_nope", ann) is None
    dataset = reads.owned_by_key(Dataset, job.dataset_id, ann)
    assert dataset is not None and dataset.n_points == 3 and "points" not in vars(dataset)
    with session_factory() as s:
        keys.revoke(session=s, prefix=ann[:10])
    assert reads.owned_by_key(Job, job.id, ann) is None


def test_migrations_match_the_tables(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from jobs.db import Base

    migrate.upgrade(database_url)
    migrate.upgrade(database_url)  # idempotent: serve runs it on every start
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_the_active_job_quota_holds_under_concurrent_submits(session_factory) -> None:  # type: ignore[no-untyped-def]
    def submit() -> str:
        with session_factory() as s:
            job, dataset = pending()
            try:
                lifecycle.submit(session=s, row=job, max_active=3, extra=[dataset])
                return "created"
            except QuotaExceeded:
                return "refused"

    outcomes = concurrently(submit, 12)
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 9
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.owner == "ann")) == 3


def test_withdraw_takes_back_only_a_job_no_worker_claimed(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        unclaimed, claimed = new_job(s), new_job(s)
        lifecycle.claim(session=s, run_id=claimed.id, lease_seconds=30)
        assert lifecycle.withdraw(session=s, row=unclaimed, dataset_sent_inline=True)
        # Its dispatch raised after the message went out: the running job keeps its row and its points.
        assert not lifecycle.withdraw(session=s, row=claimed, dataset_sent_inline=True)
        assert s.scalar(select(Job.id).where(Job.id == unclaimed.id)) is None
        assert s.scalar(select(Dataset.id).where(Dataset.id == unclaimed.dataset_id)) is None
        assert s.scalar(select(Job.status).where(Job.id == claimed.id)) == Status.RUNNING
        assert datasets.load_points(session=s, dataset_id=claimed.dataset_id) is not None


def test_leases_run_on_the_database_clock_not_the_workers(
    session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose clock is an hour behind claims and heartbeats: the reaper, on time, must
    not take its live run away (nor would one an hour ahead keep a dead run forever)."""
    with session_factory() as s:
        job = new_job(s)
        behind = utcnow() - timedelta(hours=1)
        monkeypatch.setattr(lifecycle, "utcnow", lambda: behind)
        assert lifecycle.claim(session=s, run_id=job.id, lease_seconds=30) == 1
        assert lifecycle.heartbeat(session=s, run_id=job.id, attempt=1, lease_seconds=30) is False
        monkeypatch.undo()
        assert lifecycle.reap(session=s, max_attempts=3) == 0
        s.expire_all()
        row = lifecycle.get_job(session=s, owner="ann", job_id=job.id)
        assert row.status == Status.RUNNING and row.lease_expires_at is not None
        assert abs((row.lease_expires_at - utcnow()).total_seconds() - 30) < 5


def test_nothing_non_finite_is_ever_written_to_a_json_column(session_factory: Callable[[], Session]) -> None:
    with session_factory() as s:
        job = new_job(s)
        for bad in (float("nan"), float("inf")):
            with pytest.raises((StatementError, ValueError), match="Out of range float values are not JSON compliant"):
                s.execute(update(Job).where(Job.id == job.id).values(result={"final_loss": bad}))
            s.rollback()
