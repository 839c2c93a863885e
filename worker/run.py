"""Run one unit of work by id: a job, or a chunk of a sweep's trials (one engine call).

The local executor and the Celery task both call run(); everything it knows comes from the
database, so a run can be repeated (after a lost worker) anywhere, with the same result.
Claim the row, load the dataset, train with model/, heartbeat and record progress a few times
a second, honour cancel and the deadline, store the result, all by the current attempt only.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import model
from jobs import datasets, lifecycle, results
from jobs.db import session_scope
from jobs.hyperparameters import config_from
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Job, Sweep, SweepChunk, Trial
from model.fleet import Fleet

log = logging.getLogger(__name__)


class Progress:
    """The engine's callbacks for one attempt: heartbeat on progress, decide to stop.

    beat() extends the lease and records progress when progress_interval_seconds have passed,
    and learns from the row whether a cancel was asked or the attempt was lost; should_stop()
    only reads what beat() and the deadline decided."""

    def __init__(self, run_id: str, attempt: int, max_runtime_seconds: float | None) -> None:
        self.settings = get_settings()
        self.run_id, self.attempt = run_id, attempt
        self.started = time.monotonic()
        self.deadline = self.started + max_runtime_seconds if max_runtime_seconds else None
        self.last_beat = self.started
        self.reason: str | None = None  # why the run must stop: cancelled, timeout or lost

    def beat(self, **progress: Any) -> None:
        now = time.monotonic()
        if now - self.last_beat < self.settings.progress_interval_seconds:
            return
        self.last_beat = now
        with session_scope() as session:
            cancel = lifecycle.heartbeat(
                session=session,
                run_id=self.run_id,
                attempt=self.attempt,
                lease_seconds=self.settings.lease_seconds,
                **progress,
            )
        if cancel is None or cancel:
            self.reason = "lost" if cancel is None else "cancelled"

    def should_stop(self) -> bool:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "timeout"
        return self.reason is not None


def run(run_id: str) -> None:
    """Run the job or chunk if it is queued; return quietly if it is gone, cancelled or taken."""
    (_run_chunk if lifecycle.table_of(run_id) is SweepChunk else _run_job)(run_id)


def _claim(run_id: str) -> int | None:
    with session_scope() as session:
        return lifecycle.claim(session=session, run_id=run_id, lease_seconds=get_settings().lease_seconds)


def _train(
    run_id: str, dataset_id: str, finish: Callable[..., None], train: Callable[[datasets.Points], Any]
) -> Any | None:
    """train(points), or None after finishing the run failed: its dataset is gone, or the run raised."""
    with session_scope() as session:
        points = datasets.load_points(session=session, dataset_id=dataset_id)
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


def _run_job(job_id: str) -> None:
    attempt = _claim(job_id)
    if attempt is None:
        return
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
        hyperparameters, dataset_id, max_runtime = job.hyperparameters, job.dataset_id, job.max_runtime_seconds
    progress = Progress(job_id, attempt, max_runtime)

    def finish(status: Status, result: model.TrainResult | None = None, **error: str) -> None:
        with session_scope() as session:
            if lifecycle.finish(
                session=session,
                run_id=job_id,
                attempt=attempt,
                status=status,
                result=results.scalars(result) if result else None,
                device=result.device if result else None,
                epochs_completed=result.epochs_completed if result else 0,
                last_loss=result.final_loss if result else None,
                **error,
            ):
                if result is not None:
                    results.store_histories(session, [results.history_rows(job_id, 0, result)])
            else:
                session.rollback()

    def on_progress(fleet: Fleet) -> None:  # once per engine call, not per epoch
        done = int(fleet.epochs_completed()[0])
        progress.beat(epochs_completed=done, last_loss=float(fleet.losses[0, done - 1]) if done else None)

    def train(points: datasets.Points) -> model.TrainResult:
        config = config_from(hyperparameters)
        return model.train_fleet(*points, [config], on_progress=on_progress, should_stop=progress.should_stop)[0]

    result: model.TrainResult | None = _train(job_id, dataset_id, finish, train)
    if result is None:
        return
    # A cancel or deadline seen after the last epoch stopped nothing: the run succeeded.
    stopped = _stop_error(progress, max_runtime) if result.stopped else None
    if result.diverged:
        finish(Status.FAILED, result, **results.diverged(result))
    elif stopped is not None:
        finish(stopped[0], result, **stopped[1])
    elif progress.reason != "lost":
        finish(Status.SUCCEEDED, result)


def _run_chunk(chunk_id: str) -> None:
    attempt = _claim(chunk_id)
    if attempt is None:
        return
    with session_scope() as session:
        chunk = session.scalars(select(SweepChunk).where(SweepChunk.id == chunk_id)).one()
        sweep = session.scalars(select(Sweep).where(Sweep.id == chunk.sweep_id)).one()
        lo, hi, max_runtime = chunk.lo, chunk.hi, chunk.max_runtime_seconds
        sweep_id, dataset_id, objective = sweep.id, sweep.dataset_id, sweep.objective
        in_chunk = lifecycle.in_chunk(sweep_id, lo, hi)
        trials = session.scalars(select(Trial.hyperparameters).where(in_chunk).order_by(Trial.index))
        configs = [config_from(hp) for hp in trials]
    progress = Progress(chunk_id, attempt, max_runtime)

    def finish(status: Status, fleet: list[model.TrainResult] | None = None, **error: str) -> None:
        with session_scope() as session:
            # The chunk's row first, as claim, reap and cancel lock it: the same lock order everywhere.
            if not lifecycle.finish(
                session=session,
                run_id=chunk_id,
                attempt=attempt,
                status=status,
                device=fleet[0].device if fleet else None,
                epochs_completed=sum(r.epochs_completed for r in fleet) if fleet else 0,
                **error,
            ):
                session.rollback()
            elif fleet is not None:
                _store_trials(session, sweep_id, lo, fleet, objective, (status, error))
            else:
                session.execute(update(Trial).where(in_chunk).values(status=status, **error))

    def on_progress(fleet: Fleet) -> None:
        progress.beat(epochs_completed=int(fleet.epochs_completed().sum()))

    def train(points: datasets.Points) -> list[model.TrainResult]:
        return model.train_fleet(*points, configs, on_progress=on_progress, should_stop=progress.should_stop)

    fleet: list[model.TrainResult] | None = _train(chunk_id, dataset_id, finish, train)
    if fleet is None:
        return
    stopped = _stop_error(progress, max_runtime) if any(r.stopped for r in fleet) else None
    if stopped is not None:
        finish(stopped[0], fleet, **stopped[1])
    elif progress.reason != "lost":
        finish(Status.SUCCEEDED, fleet)


def _store_trials(
    session: Session,
    sweep_id: str,
    lo: int,
    fleet: list[model.TrainResult],
    objective: str,
    stop: tuple[Status, dict[str, str]],
) -> None:
    """Each trial's outcome: diverged is failed, one stopped before its end ends as the chunk
    does (cancelled, or failed on timeout), the rest succeeded. Histories beside them."""
    rows = [
        {"sweep_id": sweep_id, "index": lo + k, **results.trial_outcome(result, objective, stop)}
        for k, result in enumerate(fleet)
    ]
    session.execute(update(Trial), rows)
    results.store_histories(session, [results.history_rows(sweep_id, lo + k, r) for k, r in enumerate(fleet)])
