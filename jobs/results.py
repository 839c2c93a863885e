"""Results of jobs and trials: the scalars in the run's row, the loss histories in the histories table.

A history is a float64 little-endian array stored as bytes, so a slice of epochs is a
substring the database cuts out, and a leaderboard or a job read never touches a history.
A running job's history grows by one segment per heartbeat; its end replaces them by one.
"""

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from sqlalchemy import Integer, bindparam, case, delete, func, insert, select
from sqlalchemy.orm import Session

import model
from jobs.db import core_table
from jobs.status import Status
from jobs.tables import History

_F8 = np.dtype("<f8")


# The Result's fields a run's row stores: not the two histories (kept in their own table) nor the
# engine's flags.
_SCALARS = [
    f.name
    for f in fields(model.TrainResult)
    if f.name not in ("loss_history", "validation_loss_history", "diverged", "stopped", "device", "pruned")
]


def scalars(result: model.TrainResult) -> dict[str, Any]:
    """The Result as a row stores it (dataclasses.asdict would copy both histories first)."""
    return {name: getattr(result, name) for name in _SCALARS}


def diverged(result: model.TrainResult) -> dict[str, str]:
    """The error of a run whose loss became non-finite."""
    return {
        "error_code": "diverged",
        "error_message": f"the loss became non-finite after epoch {result.epochs_completed}",
    }


def trial_outcome(
    result: model.TrainResult, objective: str, stop: tuple[Status, dict[str, str]] = (Status.CANCELLED, {})
) -> dict[str, Any]:
    """A trial's status, error, objective and result scalars: diverged is failed, one stopped
    before its end ends as its run does (stop: cancelled, or failed on timeout), one successive
    halving ended at a rung is pruned, the rest succeeded.
    Only a succeeded trial has an objective, so only finished trials rank (not a pruned one); a
    pruned one keeps its objective at its rung apart, for a search's sampler (jobs/search.py)."""
    error: dict[str, str | None] = {"error_code": None, "error_message": None}
    status = Status.SUCCEEDED
    if result.diverged:
        status, error = Status.FAILED, {**diverged(result)}
    elif result.stopped:
        status, error = stop[0], {**error, **stop[1]}
    elif result.pruned:
        status = Status.PRUNED
    value = result.final_loss
    if objective == "final_validation_loss":
        value = result.validation_loss_history[-1] if result.validation_loss_history else None
    return {
        "status": status,
        "objective": value if status == Status.SUCCEEDED else None,
        "rung_objective": value if status == Status.PRUNED else None,
        "result": scalars(result),
        **error,
    }


class Segment(TypedDict):
    """A row of the histories table: epochs first_epoch, first_epoch + 1, ... of a run's trial."""

    owner: str
    run_id: str
    trial: int
    first_epoch: int
    loss: bytes
    validation_loss: bytes | None


def history_rows(owner: str, run_id: str, trial: int, result: model.TrainResult) -> Segment:
    return segment(owner, run_id, trial, 0, result.loss_history, result.validation_loss_history)


def segment(
    owner: str,
    run_id: str,
    trial: int,
    first_epoch: int,
    loss: npt.ArrayLike,
    validation_loss: npt.ArrayLike | None,
) -> Segment:
    """The history entries of epochs first_epoch, first_epoch + 1, ... (0-based) of the owner's run, as a row."""
    return Segment(
        owner=owner,
        run_id=run_id,
        trial=trial,
        first_epoch=first_epoch,
        loss=np.asarray(loss, dtype=_F8).tobytes(),
        validation_loss=np.asarray(validation_loss, dtype=_F8).tobytes() if validation_loss is not None else None,
    )


# Built once (a run writes its history on every beat and at its end), on the table, not the
# ORM entity: the ORM would match each DELETE against the session's objects, which hold none.
_HISTORIES = core_table(History)
_INSERT = insert(_HISTORIES)
_OF_RUN = _HISTORIES.c.run_id == bindparam("run")
_REMOVE = delete(_HISTORIES).where(_OF_RUN)
_REMOVE_FROM = delete(_HISTORIES).where(_OF_RUN, _HISTORIES.c.first_epoch >= bindparam("epoch"))
_REMOVE_TRIALS = delete(_HISTORIES).where(_OF_RUN, _HISTORIES.c.trial.in_(bindparam("trials", expanding=True)))


def insert_histories(session: Session, rows: Sequence[Segment]) -> None:
    session.execute(_INSERT, list(rows))


def store_histories(session: Session, rows: list[Segment]) -> None:
    """Replace the histories of these (run, trial)s (a re-run after a lost worker writes them again)."""
    for run_id in {r["run_id"] for r in rows}:
        trials = [r["trial"] for r in rows if r["run_id"] == run_id]
        session.execute(_REMOVE_TRIALS, {"run": run_id, "trials": trials})
    insert_histories(session, rows)


def remove_histories(session: Session, run_id: str, from_epoch: int | None = None) -> None:
    """A run's histories, or their segments from from_epoch on."""
    if from_epoch is None:
        session.execute(_REMOVE, {"run": run_id})
    else:
        session.execute(_REMOVE_FROM, {"run": run_id, "epoch": from_epoch})


Floats = npt.NDArray[np.float64]
LONGEST = 2**27  # history entries: 1 GiB of them, the byte offset of the last still a 32-bit integer


def read_history(
    session: Session, run_id: str, trial: int, start: int, stop: int | None, max_points: int | None
) -> tuple[npt.NDArray[np.int64], Floats, Floats | None]:
    """(1-based epochs, loss, validation loss or None) of epochs [start, stop), at most max_points
    of them evenly spaced (the first and last always in); only that slice leaves the database.
    Any start and stop: empty where stop <= start, or past the history's end."""
    # No history is longer than LONGEST: clamping changes no answer and keeps the byte offsets
    # the database computes within its integers (PostgreSQL has no substr of bigints).
    start = min(start, LONGEST)
    stop = min(stop, LONGEST) if stop is not None else None
    if stop is not None and stop <= start:
        return np.zeros(0, np.int64), np.zeros(0), None
    first = History.first_epoch
    end = first + func.length(History.loss, type_=Integer) // 8
    lo = case((first < start, start), else_=first)
    hi = end if stop is None else case((end > stop, stop), else_=end)

    def cut(column: Any) -> Any:
        # substr counts bytes from 1 on SQLite and PostgreSQL alike.
        return func.substr(column, (lo - first) * 8 + 1, (hi - lo) * 8)

    query = select(cut(History.loss), cut(History.validation_loss)).where(
        History.run_id == run_id, History.trial == trial, end > start
    )
    if stop is not None:
        query = query.where(first < stop)
    rows = session.execute(query.order_by(first)).all()
    loss = np.frombuffer(b"".join(row[0] or b"" for row in rows), dtype=_F8)
    has_val = bool(rows) and rows[0][1] is not None
    val = np.frombuffer(b"".join(row[1] for row in rows), dtype=_F8) if has_val else None
    picked = np.arange(loss.size)
    if max_points is not None and loss.size > max_points:
        picked = np.unique(np.linspace(0, loss.size - 1, max_points).round().astype(np.int64))
    return picked + start + 1, loss[picked], val[picked] if val is not None else None
