"""Run one unit of work by id: a job, or a chunk of a sweep's trials.

The local executor and the Celery task both call run(); everything it knows comes from the
database, so a run can be repeated (after a lost worker) anywhere, with the same result.

A job is a fleet of one: one path claims either kind, reads its trials and dataset, trains them
in one model.train_fleet call, heartbeats and records progress a few times a second, honours
cancel and the deadline, and stores each trial's outcome, all by the current attempt only.
What tells the kinds apart is data (Kind): where the work is read from, whether the unit is its
one trial (a job), and the labels it counts under.
"""

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

import model
from jobs import datasets, lifecycle, results, search
from jobs.db import core_table, session_scope
from jobs.hyperparameters import brackets, config_from, halving_of
from jobs.settings import get_settings
from jobs.status import ACTIVE, Status
from jobs.tables import Dataset, Job, Sweep, SweepChunk, Trial
from model.fleet import Fleet
from model.halving import Halving
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


@dataclass(frozen=True)
class Work:
    """What a run reads once claimed, alike for a job and a chunk."""

    owner: str
    trials_of: str  # the id its trials' histories (a chunk's: and rows) are kept under: the job's, or the sweep's
    first_trial: int  # the index of its first trial there: 0 for a job, the chunk's lo
    hyperparameters: list[dict[str, Any]]  # one per trial
    dataset_id: str
    points: datasets.Points | None  # None: the dataset was deleted
    max_runtime_seconds: float | None
    objective: str  # what ranks the trials (a sweep's)
    halving: Halving | None = None  # a halving sweep's chunk: its bracket's successive halving
    planned_epochs: int | None = None  # the epochs the sweep's progress counts for a halving chunk
    asked: bool = False  # a search's batch: its trials take the hyperparameters asked with their outcomes
    # A search's batch: the epochs its earlier batches trained (its chunk's progress goes on
    # from there), and whether another batch follows (this one is then stored on its own and
    # the run reads the next, asked from what is stored).
    epochs_before: int = 0
    more: bool = False


@dataclass(frozen=True)
class Kind:
    """What tells a job's run from a chunk's."""

    read: Callable[[Session, str], Work | None]  # its work, None if it is gone
    # Its row holds its one trial's outcome (a job: it fails when the trial diverged) and its beats
    # stream that trial's loss history; else each trial has a row of its own, and ends alone.
    holds_its_trial: bool
    samples: str  # its label in the model-samples counter
    trainings: str  # its trials' label in the trainings counter


# A job's columns and its dataset's points in one statement, built once.
_JOB, _DATASET = core_table(Job), core_table(Dataset)
_READ_JOB = (
    select(_JOB.c.owner, _JOB.c.hyperparameters, _JOB.c.dataset_id, _JOB.c.max_runtime_seconds, _DATASET.c.points)
    .outerjoin(_DATASET, _DATASET.c.id == _JOB.c.dataset_id)
    .where(_JOB.c.id == bindparam("job"))
)


def _read_job(session: Session, job_id: str) -> Work | None:
    row = session.execute(_READ_JOB, {"job": job_id}).first()
    if row is None:
        return None
    return Work(
        owner=row.owner,
        trials_of=job_id,
        first_trial=0,
        hyperparameters=[row.hyperparameters],
        dataset_id=row.dataset_id,
        points=datasets.points_of(row.points),
        max_runtime_seconds=row.max_runtime_seconds,
        objective="final_loss",
    )


def _read_chunk(session: Session, chunk_id: str) -> Work | None:
    chunk = session.execute(
        select(SweepChunk.lo, SweepChunk.hi, SweepChunk.max_runtime_seconds, Sweep)
        .join(Sweep, Sweep.id == SweepChunk.sweep_id)
        .where(SweepChunk.id == chunk_id)
    ).first()
    if chunk is None:
        return None
    sweep = chunk.Sweep
    if sweep.search is not None:
        return _read_batch(session, sweep, sweep.search, chunk.max_runtime_seconds)
    in_chunk = lifecycle.in_chunk(sweep.id, chunk.lo, chunk.hi)
    halving, planned = None, None
    if sweep.halving is not None:
        bracket = next(b for b, lo, _ in brackets(sweep.halving, sweep.trials_total) if lo == chunk.lo)
        halving = halving_of(sweep.halving, sweep.objective, bracket)
        planned = halving.planned_epochs(chunk.hi - chunk.lo, sweep.hyperparameters["epochs"])
    return Work(
        owner=sweep.owner,
        trials_of=sweep.id,
        first_trial=chunk.lo,
        hyperparameters=list(session.scalars(select(Trial.hyperparameters).where(in_chunk).order_by(Trial.index))),
        dataset_id=sweep.dataset_id,
        points=datasets.load_points(session=session, dataset_id=sweep.dataset_id),
        max_runtime_seconds=chunk.max_runtime_seconds,
        objective=sweep.objective,
        halving=halving,
        planned_epochs=planned,
    )


def _read_batch(session: Session, sweep: Sweep, spec: dict[str, Any], max_runtime_seconds: float | None) -> Work:
    """A search's next batch: asked from the trials its earlier batches stored (jobs/search.py)."""
    stored = session.execute(
        select(Trial.hyperparameters, Trial.status, Trial.objective, Trial.rung_objective, Trial.result)
        .where(Trial.sweep_id == sweep.id, Trial.status.not_in(ACTIVE))
        .order_by(Trial.index)
    ).all()
    told = [search.told(dict(t._mapping)) for t in stored]
    base = sweep.hyperparameters
    lo = len(told)
    asked = [{**base, **varied} for varied in search.ask(spec, told)]
    halving, planned = None, len(asked) * search.longest(spec, base["epochs"])
    if sweep.halving is not None:
        halving = halving_of(sweep.halving, sweep.objective, search.bracket(spec, sweep.halving, lo))
        planned = halving.planned_epochs(len(asked), base["epochs"])
    return Work(
        owner=sweep.owner,
        trials_of=sweep.id,
        first_trial=lo,
        hyperparameters=asked,
        dataset_id=sweep.dataset_id,
        points=datasets.load_points(session=session, dataset_id=sweep.dataset_id),
        max_runtime_seconds=max_runtime_seconds,
        objective=sweep.objective,
        halving=halving,
        planned_epochs=planned,
        asked=True,
        epochs_before=sum(t.epochs for t in told),
        more=lo + len(asked) < sweep.trials_total,
    )


KINDS: dict[type[Job] | type[SweepChunk], Kind] = {
    Job: Kind(_read_job, holds_its_trial=True, samples="job", trainings="job"),
    SweepChunk: Kind(_read_chunk, holds_its_trial=False, samples="sweep", trainings="trial"),
}

NewHistory = Callable[[int], list[results.Segment]]  # the history's segments from an epoch on


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

    def beat(self, new_history: NewHistory | None = None, **progress: Any) -> None:
        moment = time.monotonic()
        if moment - self.last_beat < self.settings.progress_interval_seconds:
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

    The unit's row as this run ended it, else None: a request waiting for a job gets its answer
    from the local pool without reading it again."""
    kind = KINDS[lifecycle.table_of(run_id)]
    claimed = _claim(run_id, kind.read)
    if claimed is None:
        return None
    attempt, work = claimed
    return _Attempt(run_id, attempt, kind, work).run()


def _claim(run_id: str, read: Callable[[Session, str], Work | None]) -> tuple[int, Work] | None:
    """(attempt, its work) once the run is claimed, None if it is gone, cancelled or taken.

    What the run needs is read first, in the claim's transaction (whose commit ends it) but before
    its UPDATE: on SQLite outside the writer lock, as a dataset's points may be large. None of
    it changes while the run is queued (a dataset in use cannot be deleted); a claim that fails
    discards it."""
    lease = get_settings().lease_seconds

    def claim() -> tuple[int, Work] | None:
        with session_scope() as session:
            work = read(session, run_id)
            if work is None:
                return None
            attempt = lifecycle.claim(session=session, run_id=run_id, lease_seconds=lease)
            return None if attempt is None else (attempt, work)

    # Given up after a lease: the message is then gone, and the reaper sends the run again.
    return retrying(f"claim {run_id}", claim, lease)


@dataclass(frozen=True)
class _Ended:
    row: dict[str, Any] | None  # the unit's row as the run's end wrote it, None if nothing was written


class _Attempt:
    """One claimed attempt at a unit: trains its trials in one engine call and stores how it ended."""

    def __init__(self, run_id: str, attempt: int, kind: Kind, work: Work) -> None:
        self.run_id, self.attempt, self.kind, self.work = run_id, attempt, kind, work
        self.progress = Progress(run_id, attempt, work.max_runtime_seconds)
        self.samples = metrics.SampleCount(kind.samples)

    def run(self) -> dict[str, Any] | None:
        """Train, then end the run as it went; the row as the end wrote it, None if nothing was written.

        A search's batches before its last are each stored as they end (by this attempt only),
        and the next is read: asked from what is stored, as a later attempt would ask it."""
        while not isinstance(trained := self._train(), _Ended):
            if not self._store_batch(trained):
                return None
            self.work = retrying(f"read {self.run_id}", self._read_next, self.progress.settings.lease_seconds)
        return trained.row

    def _read_next(self) -> Work:
        with session_scope() as session:
            work = self.kind.read(session, self.run_id)
        assert work is not None  # a running sweep cannot be deleted
        return work

    def _train(self) -> list[model.TrainResult] | _Ended:
        """Train the work: how the run ended, or the results of a search's batch that trained to
        its end with another batch after it."""
        if self.work.points is None:
            message = f"dataset {self.work.dataset_id} was deleted"
            return _Ended(self._end(Status.FAILED, {"error_code": "dataset_deleted", "error_message": message}))
        try:
            trained = model.train_fleet(
                *self.work.points,
                [config_from(hp) for hp in self.work.hyperparameters],
                on_progress=self._on_progress,
                should_stop=self.progress.should_stop,
                on_start=self.progress.on_start,
                halving=self.work.halving,
            )
        except model.TrainingInputError as exc:
            return _Ended(self._end(Status.FAILED, {"error_code": "invalid_input", "error_message": str(exc)}))
        except Exception:
            log.exception("run %s failed", self.run_id)
            message = "the run failed unexpectedly; see the worker's log"
            return _Ended(self._end(Status.FAILED, {"error_code": "internal", "error_message": message}))
        if self.progress.reason == "lost":  # a newer attempt owns the run
            return _Ended(None)
        if self.kind.holds_its_trial and trained[0].diverged:
            return _Ended(self._end(Status.FAILED, results.diverged(trained[0]), trained))
        # A cancel or deadline seen after the last epoch stopped nothing: the run succeeded.
        if any(r.stopped for r in trained):
            return _Ended(self._end(*self._stop(), trained))
        if self.work.more:
            return trained
        return _Ended(self._end(Status.SUCCEEDED, {}, trained))

    def _stop(self) -> tuple[Status, dict[str, str]]:
        """How a run that was stopped (cancelled, or at its deadline) ends."""
        if self.progress.reason == "cancelled":
            return Status.CANCELLED, {}
        max_runtime_seconds = self.work.max_runtime_seconds
        return Status.FAILED, {"error_code": "timeout", "error_message": f"stopped at {max_runtime_seconds=}"}

    def _on_progress(self, fleet: Fleet) -> None:
        """Once per engine call, not per epoch."""
        self.samples.update(fleet)
        done = fleet.epochs_completed()
        if not self.kind.holds_its_trial:
            self.progress.beat(epochs_completed=self.work.epochs_before + int(done.sum()))
            return
        epochs = int(done[0])
        last_loss = float(fleet.losses[0, epochs - 1]) if epochs else None
        new_history = functools.partial(self._new_history, fleet, epochs)
        self.progress.beat(
            new_history, epochs_completed=epochs, last_loss=last_loss, last_parameters=fleet.parameters(0)
        )

    def _new_history(self, fleet: Fleet, done: int, since: int) -> list[results.Segment]:
        """The one trial's history segment of epochs [since, done), if any."""
        if done <= since:
            return []
        val = fleet.val_losses[0, since:done] if fleet.xv.shape[0] else None
        return [results.segment(self.work.owner, self.work.trials_of, 0, since, fleet.losses[0, since:done], val)]

    def _end(
        self, status: Status, error: dict[str, str], trained: list[model.TrainResult] | None = None
    ) -> dict[str, Any] | None:
        """Store how the run ended, with each trial's outcome: the row as written, None if this
        attempt is stale. Counted once written: a stale attempt's end is not an outcome."""
        trials = self._outcomes(trained or [], (status, error))
        write = functools.partial(self._write, status, error, trained or [], trials)
        ended = retrying(f"finish {self.run_id}", write, self.progress.settings.lease_seconds)
        if ended is not None:
            count = len(self.work.hyperparameters)
            outcomes = [(t["status"], t["error_code"]) for t in trials] or [(status, error.get("error_code"))] * count
            metrics.ended(self.kind.trainings, outcomes)
        return ended

    def _outcomes(self, trained: list[model.TrainResult], stop: tuple[Status, dict[str, str]]) -> list[dict[str, Any]]:
        """Each trial's outcome as its row stores it; a search's with the hyperparameters it was asked."""
        trials = [results.trial_outcome(r, self.work.objective, stop) for r in trained]
        if self.work.asked:
            return [{**t, "hyperparameters": hp} for t, hp in zip(trials, self.work.hyperparameters, strict=True)]
        return trials

    def _store_batch(self, trained: list[model.TrainResult]) -> bool:
        """Store a search's batch that ended, by this attempt only (its chunk runs on); False if stale."""
        trials = self._outcomes(trained, (Status.SUCCEEDED, {}))

        def write() -> bool:
            epochs = self.work.epochs_before + sum(r.epochs_completed for r in trained)
            with session_scope() as session:
                held = lifecycle.renew(
                    session=session,
                    run_id=self.run_id,
                    attempt=self.attempt,
                    lease_seconds=self.progress.settings.lease_seconds,
                    epochs_completed=epochs,
                )
                if held is None:
                    session.rollback()
                    return False
                self._store_trials(session, Status.SUCCEEDED, trained, trials)
                lifecycle.next_batch(session=session, chunk_id=self.run_id)
                return True

        stored = retrying(f"store a batch of {self.run_id}", write, self.progress.settings.lease_seconds)
        if stored:
            metrics.ended(self.kind.trainings, [(t["status"], t["error_code"]) for t in trials])
        return stored

    def _write(
        self, status: Status, error: dict[str, str], trained: list[model.TrainResult], trials: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        work = self.work
        values: dict[str, Any] = {
            "device": trained[0].device if trained else None,
            "epochs_completed": work.epochs_before + sum(r.epochs_completed for r in trained),
        }
        if self.kind.holds_its_trial:
            values["result"] = trials[0]["result"] if trials else None
            values["last_loss"] = trained[0].final_loss if trained else None
            values["last_parameters"] = trained[0].parameters if trained else None
        with session_scope() as session:
            # The unit's row first, as claim, reap and cancel lock it: the same lock order everywhere.
            row = lifecycle.finish(
                session=session, run_id=self.run_id, attempt=self.attempt, status=status, **values, **error
            )
            if row is None:
                session.rollback()
                return None
            self._store_trials(session, status, trained, trials)
            return row

    def _store_trials(
        self, session: Session, status: Status, trained: list[model.TrainResult], trials: list[dict[str, Any]]
    ) -> None:
        """A chunk's trials' outcomes and every trial's histories, beside the write that holds the attempt."""
        work = self.work
        if trials and not self.kind.holds_its_trial:
            rows = [{"sweep_id": work.trials_of, "index": work.first_trial + k, **t} for k, t in enumerate(trials)]
            session.execute(update(Trial), rows)
        if work.planned_epochs is not None and status == Status.SUCCEEDED:
            # Trials that ended before a rung (early stopping, divergence) left planned epochs
            # unrun: the sweep's progress counts what the search ran, so it ends at 100%.
            unrun = work.planned_epochs - sum(r.epochs_completed for r in trained)
            session.execute(
                update(Sweep).where(Sweep.id == work.trials_of).values(epochs_total=Sweep.epochs_total - unrun)
            )
        histories = [
            results.history_rows(work.owner, work.trials_of, work.first_trial + k, r) for k, r in enumerate(trained)
        ]
        if self.progress.sent_history:  # its live segments: the whole history replaces them
            results.store_histories(session, histories)
        elif histories:  # none to replace (a claim after a first attempt removed that one's)
            results.insert_histories(session, histories)
