"""Run one unit of work by id: a job, or a chunk of a sweep's trials (one engine call).

The local executor and the Celery task both call run(); everything it knows comes from the
database, so a run can be repeated (after a lost worker) anywhere, with the same result.
Claim the row, load the dataset, train with model/, heartbeat and record progress a few times
a second, honour cancel and the deadline, store the result, all by the current attempt only.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

import model
from jobs import datasets, lifecycle, results
from jobs.db import core_table, session_scope
from jobs.hyperparameters import config_from
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Dataset, Job, Sweep, SweepChunk, Trial
from model.fleet import Fleet
from worker import metrics

log = logging.getLogger(__name__)


# What a database that is restarting, unreachable or locked raises: worth another try.
TRANSIENT = (OperationalError, InterfaceError)
T = TypeVar("T")


def retrying(what: str, fn: Callable[[], T], patience: float) -> T:
    """fn(), tried again on a transient database error for up to patience seconds."""
    deadline, delay = time.monotonic() + patience, 0.1
    while True:
        try:
            return fn()
        except TRANSIENT:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: the database did not answer; trying again in %.1f s", what, delay, exc_info=True)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


NewHistory = Callable[[int], list[results.Segment]]  # the history's segments from an epoch on

# What a job's run reads once claimed, built once: its columns and its dataset's points.
_JOB, _DATASET = core_table(Job), core_table(Dataset)
_READ_JOB = (
    select(_JOB.c.owner, _JOB.c.hyperparameters, _JOB.c.dataset_id, _JOB.c.max_runtime_seconds, _DATASET.c.points)
    .outerjoin(_DATASET, _DATASET.c.id == _JOB.c.dataset_id)
    .where(_JOB.c.id == bindparam("job"))
)


class Progress:
    """The engine's callbacks for one attempt: heartbeat on progress, decide to stop.

    beat() extends the lease and records progress when progress_interval_seconds have passed,
    and learns from the row whether a cancel was asked or the attempt was lost; should_stop()
    only reads what beat() and the deadline decided. A beat the database does not answer is
    skipped (training goes on, the next beat sends what this one had); the run gives up only
    when no beat got through for a whole lease, as the reaper may have handed the run on."""

    def __init__(self, run_id: str, attempt: int, max_runtime_seconds: float | None) -> None:
        self.settings = get_settings()
        self.run_id, self.attempt = run_id, attempt
        self.started = time.monotonic()
        self.deadline = self.started + max_runtime_seconds if max_runtime_seconds else None
        self.last_beat = self.last_heard = self.started
        self.written = 0  # epochs of the loss history stored so far
        self.sent_history = False  # whether a beat sent some (its commit may be through though it failed)
        self.reason: str | None = None  # why the run must stop: cancelled, timeout or lost
        self.device: str | None = None  # to write with the next beat, once the engine chose it

    def beat(self, new_history: NewHistory | None = None, *, now: bool = False, **progress: Any) -> None:
        moment = time.monotonic()
        if not now and moment - self.last_beat < self.settings.progress_interval_seconds:
            return
        self.last_beat = moment
        segments = new_history(self.written) if new_history is not None else []
        self.sent_history = self.sent_history or bool(segments)
        if self.device is not None:
            progress["device"] = self.device
        try:
            with session_scope() as session:
                cancel = lifecycle.heartbeat(
                    session=session,
                    run_id=self.run_id,
                    attempt=self.attempt,
                    lease_seconds=self.settings.lease_seconds,
                    segments=segments,
                    **progress,
                )
        except TRANSIENT:
            log.warning("run %s: heartbeat failed; training on", self.run_id, exc_info=True)
            if moment - self.last_heard > self.settings.lease_seconds:
                self.reason = "lost"
            return
        self.last_heard = moment
        self.device = None
        if segments:
            self.written = segments[-1]["first_epoch"] + len(segments[-1]["loss"]) // 8
        if cancel is None or cancel:
            self.reason = "lost" if cancel is None else "cancelled"

    def should_stop(self) -> bool:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "timeout"
        return self.reason is not None

    def on_start(self, device: str) -> None:
        """The run's device, known once the engine chose where to train: written by the first
        beat, not a transaction of its own (a tiny run's end writes it with its result)."""
        self.device = device


def run(run_id: str) -> dict[str, Any] | None:
    """Run the job or chunk if it is queued; return quietly if it is gone, cancelled or taken.

    A job's row as this run ended it, else None: a request waiting for the job gets its answer
    from the local pool without reading it again."""
    if lifecycle.table_of(run_id) is SweepChunk:
        _run_chunk(run_id)
        return None
    return _run_job(run_id)


def _claim(run_id: str, read: Callable[[Session], T | None]) -> tuple[int, T] | None:
    """(attempt, read(session)) once the run is claimed, None if it is gone (read None), cancelled or taken.

    What the run needs is read first, in the claim's transaction (whose commit ends it) but before
    its UPDATE: on SQLite outside the writer lock, as a dataset's points may be 160 MB. None of
    it changes while the run is queued (a dataset in use cannot be deleted); a claim that fails
    discards it."""
    lease = get_settings().lease_seconds

    def claim() -> tuple[int, T] | None:
        with session_scope() as session:
            found = read(session)
            if found is None:
                return None
            attempt = lifecycle.claim(session=session, run_id=run_id, lease_seconds=lease)
            return None if attempt is None else (attempt, found)

    # Given up after a lease: the message is then gone, and the reaper sends the run again.
    return retrying(f"claim {run_id}", claim, lease)


def _train(
    run_id: str,
    dataset_id: str,
    points: datasets.Points | None,
    finish: Callable[..., None],
    train: Callable[[datasets.Points], Any],
) -> Any | None:
    """train(points), or None after finishing the run failed: its dataset is gone (points None),
    or the run raised."""
    if points is None:
        finish(Status.FAILED, error_code="dataset_deleted", error_message=f"dataset {dataset_id} was deleted")
        return None
    try:
        return train(points)
    except model.TrainingInputError as exc:
        finish(Status.FAILED, error_code="invalid_input", error_message=str(exc))
    except Exception:
        log.exception("run %s failed", run_id)
        finish(Status.FAILED, error_code="internal", error_message="the run failed unexpectedly; see the worker's log")
    return None


def _stop_error(progress: Progress, max_runtime_seconds: float | None) -> tuple[Status, dict[str, str]] | None:
    """How a run that was stopped ends; None for a lost lease (a newer attempt owns the run)."""
    if progress.reason == "cancelled":
        return Status.CANCELLED, {}
    if progress.reason == "timeout":
        return Status.FAILED, {"error_code": "timeout", "error_message": f"stopped at {max_runtime_seconds=}"}
    return None


def _run_job(job_id: str) -> dict[str, Any] | None:
    def read(session: Session) -> tuple[Any, ...] | None:
        row = session.execute(_READ_JOB, {"job": job_id}).first()
        return None if row is None else tuple(row)

    claimed = _claim(job_id, read)
    if claimed is None:
        return None
    attempt, (owner, hyperparameters, dataset_id, max_runtime, blob) = claimed
    progress = Progress(job_id, attempt, max_runtime)
    samples = metrics.SampleCount("job")
    ended: dict[str, Any] | None = None  # the row as finish wrote it

    def finish(status: Status, result: model.TrainResult | None = None, **error: str) -> None:
        nonlocal ended

        def write() -> dict[str, Any] | None:
            with session_scope() as session:
                row = lifecycle.finish(
                    session=session,
                    run_id=job_id,
                    attempt=attempt,
                    status=status,
                    result=results.scalars(result) if result else None,
                    device=result.device if result else None,
                    epochs_completed=result.epochs_completed if result else 0,
                    last_loss=result.final_loss if result else None,
                    **error,
                )
                if row is None:
                    session.rollback()
                elif result is not None:
                    history = [results.history_rows(owner, job_id, 0, result)]
                    if progress.sent_history:  # its live segments: the whole history replaces them
                        results.store_histories(session, history)
                    else:  # none to replace (a claim after a first attempt removed that one's)
                        results.insert_histories(session, history)
                return row

        ended = retrying(f"finish {job_id}", write, progress.settings.lease_seconds)
        if ended is not None:  # counted once written: a stale attempt's end is not an outcome
            metrics.ended("job", [(status, error.get("error_code"))])

    def on_progress(fleet: Fleet) -> None:  # once per engine call, not per epoch
        done = int(fleet.epochs_completed()[0])

        def new_history(since: int) -> list[results.Segment]:
            val = fleet.val_losses[0, since:done] if fleet.xv.shape[0] else None
            losses = fleet.losses[0, since:done]
            return [results.segment(owner, job_id, 0, since, losses, val)] if done > since else []

        last_loss = float(fleet.losses[0, done - 1]) if done else None
        samples.update(fleet)
        progress.beat(new_history, epochs_completed=done, last_loss=last_loss)

    def train(points: datasets.Points) -> model.TrainResult:
        config = config_from(hyperparameters)
        return model.train_fleet(
            *points, [config], on_progress=on_progress, should_stop=progress.should_stop, on_start=progress.on_start
        )[0]

    points = datasets.points_of(blob)
    result: model.TrainResult | None = _train(job_id, dataset_id, points, finish, train)
    if result is None:
        return ended
    # A cancel or deadline seen after the last epoch stopped nothing: the run succeeded.
    stopped = _stop_error(progress, max_runtime) if result.stopped else None
    if result.diverged:
        finish(Status.FAILED, result, **results.diverged(result))
    elif stopped is not None:
        finish(stopped[0], result, **stopped[1])
    elif progress.reason != "lost":
        finish(Status.SUCCEEDED, result)
    return ended


def _run_chunk(chunk_id: str) -> None:
    def read(session: Session) -> tuple[SweepChunk, Sweep, list[Any], datasets.Points | None] | None:
        chunk = session.scalars(select(SweepChunk).where(SweepChunk.id == chunk_id)).first()
        if chunk is None:
            return None
        sweep = session.scalars(select(Sweep).where(Sweep.id == chunk.sweep_id)).one()
        in_chunk = lifecycle.in_chunk(sweep.id, chunk.lo, chunk.hi)
        trials = list(session.scalars(select(Trial.hyperparameters).where(in_chunk).order_by(Trial.index)))
        points = datasets.load_points(session=session, dataset_id=sweep.dataset_id)
        session.expunge_all()  # kept as read: the claim expires what the session holds
        return chunk, sweep, trials, points

    claimed = _claim(chunk_id, read)
    if claimed is None:
        return
    attempt, (chunk, sweep, trials, points) = claimed
    lo, hi, max_runtime = chunk.lo, chunk.hi, chunk.max_runtime_seconds
    sweep_id, dataset_id = sweep.id, sweep.dataset_id
    in_chunk = lifecycle.in_chunk(sweep_id, lo, hi)
    configs = [config_from(hp) for hp in trials]
    progress = Progress(chunk_id, attempt, max_runtime)
    samples = metrics.SampleCount("sweep")

    def finish(status: Status, fleet: list[model.TrainResult] | None = None, **error: str) -> None:
        def write() -> list[metrics.Outcome]:
            with session_scope() as session:
                # The chunk's row first, as claim, reap and cancel lock it: the same lock order everywhere.
                if (
                    lifecycle.finish(
                        session=session,
                        run_id=chunk_id,
                        attempt=attempt,
                        status=status,
                        device=fleet[0].device if fleet else None,
                        epochs_completed=sum(r.epochs_completed for r in fleet) if fleet else 0,
                        **error,
                    )
                    is None
                ):
                    session.rollback()
                    return []
                if fleet is not None:
                    return _store_trials(session, sweep, lo, fleet, (status, error))
                session.execute(update(Trial).where(in_chunk).values(status=status, **error))
                return [(status, error.get("error_code"))] * (hi - lo)

        metrics.ended("trial", retrying(f"finish {chunk_id}", write, progress.settings.lease_seconds))

    def on_progress(fleet: Fleet) -> None:
        samples.update(fleet)
        progress.beat(epochs_completed=int(fleet.epochs_completed().sum()))

    def train(points: datasets.Points) -> list[model.TrainResult]:
        return model.train_fleet(
            *points, configs, on_progress=on_progress, should_stop=progress.should_stop, on_start=progress.on_start
        )

    fleet: list[model.TrainResult] | None = _train(chunk_id, dataset_id, points, finish, train)
    if fleet is None:
        return
    stopped = _stop_error(progress, max_runtime) if any(r.stopped for r in fleet) else None
    if stopped is not None:
        finish(stopped[0], fleet, **stopped[1])
    elif progress.reason != "lost":
        finish(Status.SUCCEEDED, fleet)


def _store_trials(
    session: Session, sweep: Sweep, lo: int, fleet: list[model.TrainResult], stop: tuple[Status, dict[str, str]]
) -> list[metrics.Outcome]:
    """Each trial's outcome: diverged is failed, one stopped before its end ends as the chunk
    does (cancelled, or failed on timeout), the rest succeeded. Histories beside them."""
    rows = [
        {"sweep_id": sweep.id, "index": lo + k, **results.trial_outcome(result, sweep.objective, stop)}
        for k, result in enumerate(fleet)
    ]
    session.execute(update(Trial), rows)
    histories = [results.history_rows(sweep.owner, sweep.id, lo + k, r) for k, r in enumerate(fleet)]
    results.store_histories(session, histories)
    return [(row["status"], row["error_code"]) for row in rows]
