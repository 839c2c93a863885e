"""/v1/sweeps: many trainings of one dataset as one request; its trials, their results and predictions."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from api import schemas
from api.deps import OwnerDep, SessionDep, SweepDep, SweepId, check_id, short_read
from api.errors import error
from api.jsonbody import JSONRoute
from api.pages import Cursor, Limit, owned_page
from api.routes.jobs import (
    CREATED_BEFORE,
    QUEUE_DOWN,
    MaxPoints,
    Start,
    Stop,
    SubmissionDep,
    predicted,
    result_response,
)
from jobs import lifecycle, search, summaries, sweeps, tables
from jobs.errors import Conflict
from jobs.hyperparameters import bracket_of, rung_reached
from jobs.status import Status

router = APIRouter(prefix="/sweeps", tags=["sweeps"], route_class=JSONRoute)
Index = Annotated[int, Path(ge=0, le=10**9)]


def sweep_out(session: SessionDep, sweep: tables.Sweep) -> schemas.Sweep:
    now = sweeps.state(session, sweep)
    best = now.best
    return schemas.Sweep(
        **summaries.sweep(sweep),
        grid=sweep.grid,
        random=sweep.random,
        search=sweep.search,
        halving=sweep.halving,
        trials=schemas.TrialCounts(total=sweep.trials_total, **now.counts),
        progress=schemas.SweepProgress(epochs_completed=now.epochs_completed, epochs=sweep.epochs_total),
        best=schemas.Best(
            index=best.index,
            hyperparameters=best.hyperparameters,
            objective=best.objective,
            parameters=schemas.Parameters.model_validate(best.result["parameters"]),
        )
        if best is not None and best.objective is not None and best.result is not None
        else None,
        device=now.device,
        attempts=now.attempts,
    )


def sweep_summary(sweep: tables.Sweep) -> schemas.SweepSummary:
    return schemas.SweepSummary.model_validate(summaries.sweep(sweep))


def trial_out(trial: tables.Trial, sweep: tables.Sweep) -> schemas.Trial:
    result = trial.result and schemas.ResultSummary.model_validate(trial.result)
    epochs = trial.result["epochs_completed"] if trial.result is not None else 0
    bracket = rung = None
    if sweep.halving is not None:
        if sweep.search is not None:
            bracket = search.bracket(sweep.search, sweep.halving, trial.index)
        else:
            bracket = bracket_of(sweep.halving, sweep.trials_total, trial.index)
        rung = rung_reached(sweep.halving, sweep.objective, bracket, trial.hyperparameters["epochs"], epochs)
    return schemas.Trial(
        index=trial.index,
        hyperparameters=trial.hyperparameters,
        status=trial.status,
        error=schemas.Error.of(trial.error_code, trial.error_message),
        objective=trial.objective,
        epochs_completed=epochs,
        bracket=bracket,
        rung=rung,
        result=result,
    )


@router.post("", status_code=202, responses={200: {"model": schemas.Sweep, **CREATED_BEFORE}, **QUEUE_DOWN})
def submit_sweep(body: schemas.SweepIn, submission: SubmissionDep) -> schemas.Sweep:
    """Train every combination of grid (or random draws) on one dataset, as one request."""
    sweep = submission.submit(body)
    assert isinstance(sweep, tables.Sweep)
    return sweep_out(submission.session, sweep)


@router.get("")
def list_sweeps(
    owner: OwnerDep, session: SessionDep, status: Status | None = None, limit: Limit = 20, cursor: Cursor = None
) -> schemas.Page[schemas.SweepSummary]:
    """The owner's sweeps, newest first; pass next_cursor to get the next page."""
    return owned_page(session, tables.Sweep, owner, status, limit, cursor, sweep_summary)


@router.get("/{sweep_id}")
def get_sweep(sweep: SweepDep, session: SessionDep) -> schemas.Sweep:
    """A sweep: status, trial counts, progress and the best trial so far."""
    return sweep_out(session, sweep)


@router.post("/{sweep_id}/cancel", status_code=202, responses=error(409, "The sweep has already finished."))
def cancel_sweep(sweep_id: SweepId, owner: OwnerDep, session: SessionDep) -> schemas.Sweep:
    """Queued trials never start; running ones stop within a second, keeping partial results."""
    return sweep_out(session, lifecycle.cancel_sweep(session=session, owner=owner, sweep_id=check_id("sw", sweep_id)))


@router.delete("/{sweep_id}", status_code=204, responses=error(409, "The sweep is queued or running."))
def delete_sweep(sweep: SweepDep, session: SessionDep) -> Response:
    """Delete a finished sweep with its trials and results; 409 while it runs (cancel it first)."""
    sweeps.remove(session, sweep)
    return Response(status_code=204)


@router.get("/{sweep_id}/trials")
def list_trials(
    sweep: SweepDep,
    session: SessionDep,
    order_by: Annotated[Literal["objective", "index"], Query()] = "index",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> schemas.Page[schemas.Trial]:
    """The sweep's trials without histories: by index, or best objective first (the leaderboard)."""
    after = int(cursor[1:]) if cursor else None  # the index of the last trial of the previous page
    rows, following = sweeps.trials_page(session, sweep.id, order_by, limit, after)
    return schemas.Page[schemas.Trial](
        items=[trial_out(t, sweep) for t in rows], next_cursor=f"c{following}" if following is not None else None
    )


@router.get("/{sweep_id}/trials/{index}", response_model=schemas.TrialWithResult)
async def get_trial(
    sweep: SweepDep,
    index: Index,
    session: SessionDep,
    start: Start = 0,
    stop: Stop = None,
    max_points: MaxPoints = None,
) -> Response:
    """One trial with its whole result (histories: whole, a slice of epochs, or at most max_points)."""
    trial = await short_read(sweeps.trial, session, sweep.id, index)
    if trial.result is None:
        return Response(
            schemas.TrialWithResult(**dict(trial_out(trial, sweep))).model_dump_json(), media_type="application/json"
        )
    before = trial_out(trial, sweep).model_dump_json(exclude={"result"}).encode()[:-1] + b',"result":'
    return await result_response(session, trial.result, sweep.id, index, start, stop, max_points, before)


@router.post("/{sweep_id}/trials/{index}/predict", responses=error(409, "The trial has not succeeded."))
def predict_trial(sweep: SweepDep, index: Index, body: schemas.PredictIn, session: SessionDep) -> schemas.PredictOut:
    """The trial's trained network's output for each x; 409 unless the trial succeeded."""
    trial = sweeps.trial(session, sweep.id, index)
    if trial.status != Status.SUCCEEDED or trial.result is None:
        raise Conflict(f"trial {index} is {trial.status}: there is a result once it has succeeded")
    return predicted(trial.result["parameters"], body.x)
