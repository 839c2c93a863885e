"""Results of jobs and trials: the scalars in the run's row, the loss histories in the histories table.

A history is a float64 little-endian array stored as bytes, so a slice of epochs is a
substring the database cuts out, and a leaderboard or a job read never touches a history.
"""

from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

import model
from jobs.status import Status
from jobs.tables import History

_F8 = np.dtype("<f8")


def scalars(result: model.TrainResult) -> dict[str, Any]:
    """The Result as a row stores it: everything but the two histories and the engine's flags."""
    out = asdict(result)
    for kept_elsewhere in ("loss_history", "validation_loss_history", "diverged", "stopped", "device"):
        del out[kept_elsewhere]
    return out


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
    before its end ends as its run does (stop: cancelled, or failed on timeout), the rest succeeded.
    Only a succeeded trial has an objective, so only finished trials rank."""
    error: dict[str, str | None] = {"error_code": None, "error_message": None}
    status = Status.SUCCEEDED
    if result.diverged:
        status, error = Status.FAILED, {**diverged(result)}
    elif result.stopped:
        status, error = stop[0], {**error, **stop[1]}
    value = result.final_loss
    if objective == "final_validation_loss":
        value = result.validation_loss_history[-1] if result.validation_loss_history else None
    return {
        "status": status,
        "objective": value if status == Status.SUCCEEDED else None,
        "result": scalars(result),
        **error,
    }


def history_rows(run_id: str, trial: int, result: model.TrainResult) -> History:
    val = result.validation_loss_history
    return History(
        run_id=run_id,
        trial=trial,
        loss=np.asarray(result.loss_history, dtype=_F8).tobytes(),
        validation_loss=np.asarray(val, dtype=_F8).tobytes() if val is not None else None,
    )


def store_histories(session: Session, rows: list[History]) -> None:
    """Replace the histories of these (run, trial)s (a re-run after a lost worker writes them again)."""
    for run_id in {r.run_id for r in rows}:
        trials = [r.trial for r in rows if r.run_id == run_id]
        session.execute(delete(History).where(History.run_id == run_id, History.trial.in_(trials)))
    session.add_all(rows)


def remove_histories(session: Session, run_id: str) -> None:
    session.execute(delete(History).where(History.run_id == run_id))


def read_history(
    session: Session, run_id: str, trial: int, start: int, stop: int | None, max_points: int | None
) -> tuple[npt.NDArray[np.int64], list[float], list[float] | None]:
    """(1-based epochs, loss, validation loss or None) of epochs [start, stop), at most max_points
    of them evenly spaced (the first and last always in); only that slice leaves the database."""

    def cut(column: Any) -> Any:
        # substr counts bytes from 1 on SQLite and PostgreSQL alike.
        length = max(0, stop - start) * 8 if stop is not None else func.length(column)
        return func.substr(column, start * 8 + 1, length)

    row = session.execute(
        select(cut(History.loss), cut(History.validation_loss)).where(History.run_id == run_id, History.trial == trial)
    ).one_or_none()
    if row is None:
        return np.zeros(0, dtype=np.int64), [], None
    loss = np.frombuffer(row[0] or b"", dtype=_F8)
    val = np.frombuffer(row[1], dtype=_F8) if row[1] is not None else None
    picked = np.arange(loss.size)
    if max_points is not None and loss.size > max_points:
        picked = np.unique(np.linspace(0, loss.size - 1, max_points).round().astype(np.int64))
    return picked + start + 1, loss[picked].tolist(), val[picked].tolist() if val is not None else None
