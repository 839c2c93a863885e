"""worker.run.run(run_id) called directly, on both databases: no HTTP, no server, no broker.

Each test stores a job (or a sweep's chunks) through jobs/, runs it in this process and reads
back what the run wrote: the row, its result scalars and its histories."""

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import undefer

import model
from api.schemas import Hyperparameters
from jobs import admission, datasets, lifecycle, migrate, results
from jobs.db import new_session, session_scope, utcnow
from jobs.hyperparameters import config_from
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Dataset, History, Job, Sweep, SweepChunk, Trial, new_id
from tests.jobs.test_store import _reset_process_engine
from tests.support.data import sine_points
from worker.run import run

PROGRESS_INTERVAL = 0.05  # seconds between a run's heartbeats in these tests
# Long enough never to finish within a test: 1,000 single-point steps an epoch, a million epochs.
LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 1_000_000}
GUARD_SECONDS = 20.0  # the deadline of a long job that must stop for another reason


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    """The CPU kernels compiled (or loaded) once, so no test's timing pays for it."""
    model.warm_up()


@pytest.fixture(autouse=True)
def store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's engine (what run() uses) on a fresh database_url, heartbeats every 50 ms."""
    migrate.upgrade(database_url)
    monkeypatch.setenv("TINYTRAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TINYTRAIN_PROGRESS_INTERVAL_SECONDS", str(PROGRESS_INTERVAL))
    _reset_process_engine()
    yield
    _reset_process_engine()


def resolved(**values: Any) -> dict[str, Any]:
    """Hyperparameters as a job's row stores them: every TrainConfig field, defaults filled in."""
    return {**Hyperparameters(device="cpu").model_dump(), **values}


def points(n: int = 200, seed: int = 0) -> datasets.Points:
    p = sine_points(n, seed)
    return np.array(p["x"]), np.array(p["y"])


def submit_job(data: datasets.Points, hp: dict[str, Any], max_runtime_seconds: float | None = None) -> str:
    """A queued job on a new dataset of these points; its id."""
    dataset = datasets.build(owner="ann", x=data[0], y=data[1], name=None)
    job = Job(
        id=new_id("job"),
        owner="ann",
        name=None,
        status=Status.QUEUED,
        dataset_id=dataset.id,
        hyperparameters=hp,
        max_runtime_seconds=max_runtime_seconds,
        attempts=0,
        cancel_requested=False,
        epochs_completed=0,
        request_hash="h",
    )
    with new_session() as s:
        stored, created = lifecycle.submit(session=s, row=job, max_active=100, extra=[dataset])
        assert created
        return stored.id


def job_row(job_id: str) -> Job:
    with new_session() as s:
        row = s.scalars(select(Job).where(Job.id == job_id).options(undefer(Job.result))).one()
        s.expunge(row)
        return row


def history(run_id: str, trial: int = 0) -> tuple[list[int], list[float], list[float] | None]:
    with new_session() as s:
        epochs, loss, val = results.read_history(s, run_id, trial, 0, None, None)
    return epochs.tolist(), loss.tolist(), val.tolist() if val is not None else None


def history_count(run_id: str) -> int:
    with new_session() as s:
        return s.scalar(select(func.count()).select_from(History).where(History.run_id == run_id)) or 0


def without_time(scalars: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scalars.items() if k != "training_seconds"}


def assert_same_result(stored: dict[str, Any] | None, run_id: str, trial: int, alone: model.TrainResult) -> None:
    """What run() stored (scalars and history) is what model.train gives alone, to the bit."""
    assert stored is not None
    assert without_time(stored) == without_time(results.scalars(alone))
    epochs, loss, val = history(run_id, trial)
    assert epochs == list(range(1, alone.epochs_completed + 1))
    assert loss == alone.loss_history
    assert val == alone.validation_loss_history


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def trains(run_id: str) -> bool:
    """The job or chunk is claimed and has reported at least one epoch."""
    table = lifecycle.table_of(run_id)
    with new_session() as s:
        status, epochs = s.execute(select(table.status, table.epochs_completed).where(table.id == run_id)).one()
    return bool(status == Status.RUNNING and epochs >= 1)


def run_in_thread(pool: ThreadPoolExecutor, run_id: str) -> "Future[dict[str, Any] | None]":
    """run(run_id) in the pool, once it is training."""
    future = pool.submit(run, run_id)
    wait_until(lambda: trains(run_id) or future.done())
    assert not future.done(), future.exception()
    return future


def ends_within_a_second(run_id: str, act: Callable[[], object]) -> None:
    """run(run_id) in a thread; once it trains, act() (a cancel, a take-over): the run must end
    within a second, at its next heartbeat."""
    with ThreadPoolExecutor(1) as pool:
        future = run_in_thread(pool, run_id)
        act()
        acted = time.monotonic()
        future.result(timeout=GUARD_SECONDS)
        assert time.monotonic() - acted < 1.0


def cancel_job(job_id: str) -> None:
    with new_session() as s:
        assert lifecycle.cancel(session=s, owner="ann", job_id=job_id).status == Status.RUNNING


def cancel_sweep(sweep_id: str) -> None:
    with new_session() as s:
        assert lifecycle.cancel_sweep(session=s, owner="ann", sweep_id=sweep_id).status == Status.RUNNING


def test_a_job_succeeds_and_stores_what_model_train_gives_alone() -> None:
    data = points(200, seed=1)
    hp = resolved(learning_rate=0.2, batch_size=16, epochs=40, seed=7, validation_fraction=0.2, dtype="float64")
    job_id = submit_job(data, hp)
    ended = run(job_id)
    alone = model.train(*data, config_from(hp))
    row = job_row(job_id)
    # What run() hands back (a waiting request's answer) is the row as stored.
    assert ended == {c.name: getattr(row, c.name) for c in Job.__table__.columns}
    assert (row.status, row.attempts, row.error_code, row.error_message) == (Status.SUCCEEDED, 1, None, None)
    assert (row.device, row.epochs_completed, row.last_loss) == ("cpu", 40, alone.final_loss)
    assert row.last_parameters == alone.parameters
    assert row.lease_expires_at is None and row.finished_at is not None and row.started_at is not None
    assert row.result is not None and set(row.result) == {
        "parameters",
        "initial_loss",
        "final_loss",
        "epochs_completed",
        "stopped_early",
        "training_seconds",
    }
    assert row.result["training_seconds"] > 0
    assert_same_result(row.result, job_id, 0, alone)
    assert alone.validation_loss_history is not None and len(alone.validation_loss_history) == 40


def test_a_float32_job_with_early_stopping_matches_too() -> None:
    data = points(150, seed=2)
    hp = resolved(learning_rate=0.05, batch_size=8, epochs=500, early_stopping={"patience": 3, "min_delta": 1e-3})
    job_id = submit_job(data, hp)
    run(job_id)
    alone = model.train(*data, config_from(hp))
    assert alone.stopped_early and alone.epochs_completed < 500  # the case this test is about
    row = job_row(job_id)
    assert row.status == Status.SUCCEEDED and row.epochs_completed == alone.epochs_completed
    assert_same_result(row.result, job_id, 0, alone)


def test_a_job_past_its_max_runtime_fails_with_timeout_and_keeps_its_partial_result() -> None:
    job_id = submit_job(points(1000), resolved(**LONG), max_runtime_seconds=0.3)
    started = time.monotonic()
    run(job_id)
    assert time.monotonic() - started < 2.0
    row = job_row(job_id)
    assert (row.status, row.error_code) == (Status.FAILED, "timeout")
    assert row.error_message is not None and "max_runtime_seconds=0.3" in row.error_message
    assert row.result is not None and 1 <= row.result["epochs_completed"] < LONG["epochs"]
    assert row.epochs_completed == row.result["epochs_completed"] and row.last_loss == row.result["final_loss"]
    epochs, loss, _ = history(job_id)
    assert len(loss) == row.result["epochs_completed"] and loss[-1] == row.result["final_loss"]
    assert epochs[-1] == row.result["epochs_completed"]


def test_a_cancel_stops_a_running_job_within_a_second_and_keeps_its_partial_result() -> None:
    job_id = submit_job(points(1000), resolved(**LONG), max_runtime_seconds=GUARD_SECONDS)
    ends_within_a_second(job_id, lambda: cancel_job(job_id))
    row = job_row(job_id)
    assert (row.status, row.error_code, row.cancel_requested) == (Status.CANCELLED, None, True)
    assert row.result is not None and row.result["epochs_completed"] >= 1
    assert len(history(job_id)[1]) == row.result["epochs_completed"]


def take_over(table: type[Job] | type[SweepChunk], run_id: str) -> None:
    """The lease ran out (one transaction with the reap, so attempt 1 cannot extend it in
    between): the reaper queues the run again and attempt 2 claims it."""
    with new_session() as s:
        expired = utcnow() - timedelta(seconds=1)
        s.execute(update(table).where(table.id == run_id).values(lease_expires_at=expired))
        assert lifecycle.reap(session=s, max_attempts=3) == 1
        assert lifecycle.claim(session=s, run_id=run_id, lease_seconds=30) == 2


def test_a_run_whose_lease_was_taken_over_writes_nothing_at_its_end() -> None:
    job_id = submit_job(points(1000), resolved(**LONG), max_runtime_seconds=GUARD_SECONDS)
    ends_within_a_second(job_id, lambda: take_over(Job, job_id))  # attempt 1 learns it at its next heartbeat
    row = job_row(job_id)
    assert (row.status, row.attempts, row.result, row.error_code) == (Status.RUNNING, 2, None, None)
    assert row.finished_at is None and row.lease_expires_at is not None
    assert history_count(job_id) == 0


def test_a_diverging_job_fails_with_diverged_and_finite_parameters() -> None:
    data = points(100)
    hp = resolved(learning_rate=1e6, batch_size=4, epochs=50)
    job_id = submit_job(data, hp)
    run(job_id)
    row = job_row(job_id)
    assert (row.status, row.error_code) == (Status.FAILED, "diverged")
    assert row.result is not None and row.result["epochs_completed"] < 50
    assert all(math.isfinite(v) for v in row.result["parameters"].values())
    assert set(row.result["parameters"]) == set(model.PARAMETER_NAMES)
    alone = model.train(*data, config_from(hp))
    assert alone.diverged
    assert_same_result(row.result, job_id, 0, alone)


def test_a_job_whose_dataset_was_deleted_fails_with_dataset_deleted() -> None:
    job_id = submit_job(points(20), resolved(epochs=3))
    with session_scope() as s:
        s.execute(delete(Dataset).where(Dataset.id == job_row(job_id).dataset_id))
    run(job_id)
    row = job_row(job_id)
    assert (row.status, row.error_code, row.attempts, row.result) == (Status.FAILED, "dataset_deleted", 1, None)
    assert row.error_message is not None and row.dataset_id in row.error_message
    assert history_count(job_id) == 0


def test_running_a_job_that_is_not_queued_does_nothing() -> None:
    cancelled = submit_job(points(20), resolved(epochs=3))
    with new_session() as s:
        assert lifecycle.cancel(session=s, owner="ann", job_id=cancelled).status == Status.CANCELLED
    finished = submit_job(points(20), resolved(epochs=3))
    run(finished)
    running = submit_job(points(20), resolved(epochs=3))
    with new_session() as s:
        assert lifecycle.claim(session=s, run_id=running, lease_seconds=30) == 1  # another worker has it
    before = {job_id: job_row(job_id) for job_id in (cancelled, finished, running)}
    histories = {job_id: history(job_id) for job_id in before}
    for job_id in before:
        run(job_id)
    columns = [c.name for c in Job.__table__.columns]
    for job_id, row in before.items():
        after = job_row(job_id)
        assert {c: getattr(after, c) for c in columns} == {c: getattr(row, c) for c in columns}
        assert history(job_id) == histories[job_id]
    run("job_" + "0" * 24)  # and one that never existed


def test_a_training_input_error_at_run_time_fails_the_job_with_invalid_input() -> None:
    job_id = submit_job(points(20), resolved(batch_size=50, epochs=3))  # more than the 20 points
    run(job_id)
    row = job_row(job_id)
    assert (row.status, row.error_code, row.result) == (Status.FAILED, "invalid_input", None)
    assert row.error_message is not None and "batch_size" in row.error_message


def test_an_unexpected_error_fails_the_job_with_internal_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    job_id = submit_job(points(20), resolved(epochs=3, not_a_field=1))  # TrainConfig refuses it
    run(job_id)
    row = job_row(job_id)
    assert (row.status, row.error_code, row.result) == (Status.FAILED, "internal", None)
    assert row.error_message is not None and "not_a_field" not in row.error_message  # the log has it, not the client
    assert any(job_id in r.getMessage() and r.exc_info for r in caplog.records)


def submit_sweep(
    data: datasets.Points,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    chunk_trials: int = 1024,
    max_runtime_seconds: float | None = None,
) -> tuple[str, list[str]]:
    """A sweep admitted and enqueued as the API does it; (its id, its chunks' ids in dispatch order)."""
    request = admission.Request(
        owner="ann",
        hyperparameters=base,
        dataset_id=None,
        points=data,
        name=None,
        max_runtime_seconds=max_runtime_seconds,
        idempotency_key=None,
        request_hash="h",
        grid=grid,
    )
    settings = get_settings().model_copy(update={"sweep_chunk_trials": chunk_trials})
    dispatched: list[tuple[str, str]] = []
    with new_session() as s:
        admitted = admission.admit_sweep(session=s, request=request, settings=settings, has_cuda=lambda: False)
        sweep, created = admission.enqueue(
            session=s,
            admitted=admitted,
            settings=settings.model_copy(update={"max_active_jobs_per_owner": 100}),
            dispatch=lambda run_id, queue: dispatched.append((run_id, queue)),
        )
    assert created and all(c.startswith("swc_") and q == "cpu" for c, q in dispatched)
    return sweep.id, [c for c, _ in dispatched]


def sweep_row(sweep_id: str) -> Sweep:
    with new_session() as s:
        row = s.scalars(select(Sweep).where(Sweep.id == sweep_id)).one()
        s.expunge(row)
        return row


def chunks_of(sweep_id: str) -> list[SweepChunk]:
    with new_session() as s:
        chunks = s.scalars(select(SweepChunk).where(SweepChunk.sweep_id == sweep_id).order_by(SweepChunk.lo)).all()
        s.expunge_all()
        return list(chunks)


def trials_of(sweep_id: str) -> list[Trial]:
    with new_session() as s:
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.index)).all()
        s.expunge_all()
        return list(trials)


def test_a_sweeps_chunks_store_each_trial_as_model_train_gives_it_alone() -> None:
    data = points(120, seed=3)
    base = resolved(batch_size=8, epochs=25, seed=5, dtype="float64", validation_fraction=0.25)
    # Two chunks: trials 0-1, then 2.
    sweep_id, chunk_ids = submit_sweep(data, base, {"learning_rate": [0.01, 0.1, 0.5]}, chunk_trials=2)
    assert len(chunk_ids) == 2
    run(chunk_ids[0])
    assert sweep_row(sweep_id).status == Status.RUNNING  # its second chunk is still queued
    run(chunk_ids[1])
    assert sweep_row(sweep_id).status == Status.SUCCEEDED
    chunks, trials = chunks_of(sweep_id), trials_of(sweep_id)
    assert [(c.status, c.attempts, c.device, c.epochs_completed) for c in chunks] == [
        (Status.SUCCEEDED, 1, "cpu", 50),
        (Status.SUCCEEDED, 1, "cpu", 25),
    ]
    assert [t.hyperparameters["learning_rate"] for t in trials] == [0.01, 0.1, 0.5]
    for trial in trials:
        alone = model.train(*data, config_from(trial.hyperparameters))
        assert (trial.status, trial.error_code) == (Status.SUCCEEDED, None)
        assert alone.validation_loss_history is not None
        assert trial.objective == alone.validation_loss_history[-1]  # final_validation_loss: there is a split
        assert_same_result(trial.result, sweep_id, trial.index, alone)
    run(chunk_ids[0])  # a chunk that is done does nothing when run again
    assert sweep_row(sweep_id).status == Status.SUCCEEDED
    assert chunks_of(sweep_id)[0].attempts == 1


def test_a_diverged_trial_fails_alone_and_the_sweep_succeeds() -> None:
    data = points(100, seed=4)
    sweep_id, (chunk_id,) = submit_sweep(data, resolved(batch_size=4, epochs=20), {"learning_rate": [0.05, 1e6]})
    run(chunk_id)
    assert (sweep_row(sweep_id).status, sweep_row(sweep_id).error_code) == (Status.SUCCEEDED, None)
    fine, diverged = trials_of(sweep_id)
    assert (fine.status, fine.error_code) == (Status.SUCCEEDED, None) and fine.objective is not None
    assert (diverged.status, diverged.error_code, diverged.objective) == (Status.FAILED, "diverged", None)
    assert diverged.result is not None and all(math.isfinite(v) for v in diverged.result["parameters"].values())
    for trial in (fine, diverged):
        assert_same_result(trial.result, sweep_id, trial.index, model.train(*data, config_from(trial.hyperparameters)))


def test_chunks_ending_at_once_end_their_sweep() -> None:
    """Four one-trial chunks run side by side: whichever ends last ends the sweep, even when
    their ends commit at the same moment (a few sweeps, as the ends race)."""
    data = points(60, seed=5)
    for _ in range(6):
        sweep_id, chunk_ids = submit_sweep(data, resolved(batch_size=4, epochs=30), {"seed": list(range(4))}, 1)
        with ThreadPoolExecutor(len(chunk_ids)) as pool:
            list(pool.map(run, chunk_ids))
        assert [c.status for c in chunks_of(sweep_id)] == [Status.SUCCEEDED] * 4
        assert sweep_row(sweep_id).status == Status.SUCCEEDED


# One trial that ends at once, two that never would: what happens to each when the chunk stops.
SHORT_AND_LONG = {"epochs": [5, 1_000_000, 1_000_000]}
LONG_BASE = {**LONG, "dtype": "float64"}


def assert_partial(trial: Trial, sweep_id: str, status: Status, error_code: str | None) -> None:
    assert (trial.status, trial.error_code, trial.objective) == (status, error_code, None)
    assert trial.result is not None and 1 <= trial.result["epochs_completed"] < 1_000_000
    assert len(history(sweep_id, trial.index)[1]) == trial.result["epochs_completed"]


def assert_chunk_and_sweep_ended(sweep_id: str, status: Status, error_code: str | None) -> None:
    """The sweep's one chunk and the sweep itself ended with this status and error code."""
    (chunk,), sweep = chunks_of(sweep_id), sweep_row(sweep_id)
    assert (chunk.status, chunk.error_code) == (status, error_code)
    assert (sweep.status, sweep.error_code) == (status, error_code)


def test_a_chunk_past_its_max_runtime_fails_its_unfinished_trials_and_the_sweep_with_timeout() -> None:
    data = points(1000)
    sweep_id, (chunk_id,) = submit_sweep(data, resolved(**LONG_BASE), SHORT_AND_LONG, max_runtime_seconds=0.3)
    started = time.monotonic()
    run(chunk_id)
    assert time.monotonic() - started < 2.0
    assert_chunk_and_sweep_ended(sweep_id, Status.FAILED, "timeout")
    short, *long = trials_of(sweep_id)
    assert short.status == Status.SUCCEEDED
    assert_same_result(short.result, sweep_id, 0, model.train(*data, config_from(short.hyperparameters)))
    for trial in long:
        assert_partial(trial, sweep_id, Status.FAILED, "timeout")


def test_a_cancelled_sweep_stops_its_running_chunk_within_a_second_keeping_partial_results() -> None:
    data = points(1000)
    sweep_id, (chunk_id,) = submit_sweep(data, resolved(**LONG_BASE), SHORT_AND_LONG, max_runtime_seconds=GUARD_SECONDS)
    ends_within_a_second(chunk_id, lambda: cancel_sweep(sweep_id))
    assert_chunk_and_sweep_ended(sweep_id, Status.CANCELLED, None)
    short, *long = trials_of(sweep_id)
    assert short.status == Status.SUCCEEDED
    assert_same_result(short.result, sweep_id, 0, model.train(*data, config_from(short.hyperparameters)))
    for trial in long:
        assert_partial(trial, sweep_id, Status.CANCELLED, None)


def test_a_chunk_whose_lease_was_taken_over_writes_nothing_at_its_end() -> None:
    sweep_id, (chunk_id,) = submit_sweep(points(1000), resolved(**LONG_BASE), SHORT_AND_LONG, 1024, GUARD_SECONDS)
    ends_within_a_second(chunk_id, lambda: take_over(SweepChunk, chunk_id))
    (chunk,), sweep = chunks_of(sweep_id), sweep_row(sweep_id)
    assert (chunk.status, chunk.attempts, chunk.finished_at, sweep.status) == (Status.RUNNING, 2, None, Status.RUNNING)
    # Not even the short trial, which attempt 1 did finish: attempt 2 will write them all.
    assert [(t.status, t.result, t.objective) for t in trials_of(sweep_id)] == [(Status.RUNNING, None, None)] * 3
    assert history_count(sweep_id) == 0


def test_a_chunk_whose_dataset_was_deleted_fails_its_trials_and_its_sweep() -> None:
    sweep_id, (chunk_id,) = submit_sweep(points(20), resolved(batch_size=4, epochs=3), {"seed": [0, 1]})
    with session_scope() as s:
        s.execute(delete(Dataset).where(Dataset.id == sweep_row(sweep_id).dataset_id))
    run(chunk_id)
    assert_chunk_and_sweep_ended(sweep_id, Status.FAILED, "dataset_deleted")
    assert [(t.status, t.error_code, t.result) for t in trials_of(sweep_id)] == [
        (Status.FAILED, "dataset_deleted", None)
    ] * 2
    assert history_count(sweep_id) == 0


Results = list[model.TrainResult]


def test_a_cancel_that_comes_after_the_last_epoch_leaves_the_finished_sweep_succeeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cancel is committed while the chunk's last engine call runs, so the progress report
    after it (whose heartbeat reads the flag) is the first to see it: the race made certain."""
    sweep_id, (chunk_id,) = submit_sweep(points(60), resolved(batch_size=4, epochs=30), {"seed": [0, 1]})
    real_train_fleet: Callable[..., Results] = model.train_fleet

    def cancel_during_the_last_call(*args: Any, on_progress: Callable[[Any], None], **kwargs: Any) -> Results:
        def report(fleet: Any) -> None:
            if fleet.running().size == 0:  # every trial has finished: this is the last report
                with new_session() as s:
                    lifecycle.cancel_sweep(session=s, owner="ann", sweep_id=sweep_id)
                time.sleep(2 * PROGRESS_INTERVAL)  # so this report's heartbeat is due
            on_progress(fleet)

        return real_train_fleet(*args, on_progress=report, **kwargs)

    monkeypatch.setattr(model, "train_fleet", cancel_during_the_last_call)
    run(chunk_id)
    trials = trials_of(sweep_id)
    assert [(t.status, t.result and t.result["epochs_completed"]) for t in trials] == [(Status.SUCCEEDED, 30)] * 2
    (chunk,) = chunks_of(sweep_id)
    assert (chunk.status, sweep_row(sweep_id).status) == (Status.SUCCEEDED, Status.SUCCEEDED)  # today: cancelled
