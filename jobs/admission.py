"""Admission: whether a job or a sweep may run, and the rows that store it (not yet added).

Everything is checked before anything is stored or queued: limits, the device, the dataset,
and every trial as the engine would check it. Problems raise InvalidInput naming the field
(and the trial); the API answers them 422.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

import model
from jobs import datasets, lifecycle, search, storage
from jobs.db import utcnow
from jobs.errors import InvalidInput, QueueUnavailable
from jobs.hyperparameters import brackets, config_from, default_objective, grid_size, halving_of, trials
from jobs.settings import Settings
from jobs.status import Status
from jobs.tables import Dataset, Job, Sweep, SweepChunk, Trial, new_id
from model.config import TrainConfig
from model.fleet import check_config, split_sizes, training_points

HP = ("body", "hyperparameters")


@dataclass
class Request:
    """What a client asked to run, as plain values (the API validated their types)."""

    owner: str
    hyperparameters: dict[str, Any]  # resolved: every field, defaults filled in
    dataset_id: str | None
    points: datasets.Points | None  # sent inline instead of a dataset_id
    name: str | None
    max_runtime_seconds: float | None
    idempotency_key: str | None
    request_hash: str | None  # of the whole body, with an idempotency key: tells a retry from another request
    grid: dict[str, list[Any]] | None = None
    random: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    halving: dict[str, Any] | None = None
    objective: str | None = None


@dataclass
class Admitted:
    row: Job | Sweep
    extra: list[Any] = field(default_factory=list)  # the inline dataset, a sweep's chunks and trials
    inline: bool = False


def request_hash(body_json: str) -> str:
    return hashlib.sha256(body_json.encode()).hexdigest()


def _dataset(session: Session, request: Request, settings: Settings) -> tuple[int, str, Dataset | None]:
    """(points, dataset id, the inline dataset row or None); InvalidInput if the points do not
    fit the job's dtype."""
    dtype = request.hyperparameters["dtype"]
    if request.points is not None:
        x, y = request.points
        if x.size > settings.max_points:
            raise InvalidInput(("body", "dataset", "x"), f"at most {settings.max_points} points")
        for name, values in (("x", x), ("y", y)):
            _check_range(dtype, name, float(np.abs(values).max(initial=0.0)), ("body", "dataset", name), "")
        inline = datasets.build(owner=request.owner, x=x, y=y, name=request.name)
        inline.inline = True  # deleted with the last job or sweep that uses it (jobs/storage.py)
        return inline.n_points, inline.id, inline
    assert request.dataset_id is not None
    stored = datasets.get(session=session, owner=request.owner, dataset_id=request.dataset_id)
    for name, lo, hi in (("x", stored.x_min, stored.x_max), ("y", stored.y_min, stored.y_max)):
        _check_range(dtype, name, max(abs(lo), abs(hi)), ("body", "dataset_id"), f"dataset {stored.id}: ")
    return stored.n_points, stored.id, None


def _check_range(dtype: str, name: str, extent: float, loc: tuple[str | int, ...], said: str) -> None:
    """InvalidInput at loc if values of magnitude up to extent overflow dtype (to inf, where the
    engine could only report the job as diverged)."""
    largest = float(np.finfo(dtype).max)
    if extent > largest:
        hint = "; use dtype float64" if dtype == "float32" else ""
        raise InvalidInput(loc, f"{said}{name} reaches {extent:g}, over {largest:g}: beyond {dtype} range{hint}")


def _check_learning_rate(hp: dict[str, Any], loc: tuple[str | int, ...], said: str) -> None:
    """InvalidInput if a positive learning rate rounds to 0 in the dtype: no step would move."""
    rate, dtype = hp["learning_rate"], hp["dtype"]
    if isinstance(rate, int | float) and rate > 0 and np.dtype(dtype).type(rate) == 0:
        raise InvalidInput(
            (*loc, "learning_rate"), f"{said}learning_rate {rate:g} rounds to 0 in {dtype}; use dtype float64"
        )


def _check_dtype_range(hp: dict[str, Any], loc: tuple[str | int, ...], said: str) -> None:
    """InvalidInput naming the field whose value the engine would cast to inf in the run's dtype
    (a float32 initial parameter of 1e39 trains as inf: a result no JSON can hold)."""
    values: list[tuple[tuple[str, ...], str, float]] = [(("learning_rate",), "learning_rate", hp["learning_rate"])]
    for name, value in (hp["initial_parameters"] or {}).items():
        values.append((("initial_parameters", name), f"initial_parameters.{name}", value))
    for where, name, value in values:
        _check_range(hp["dtype"], name, abs(value), (*loc, *where), said)


def _check_base(request: Request, has_cuda: Callable[[], bool]) -> None:
    if request.hyperparameters["device"] == "cuda" and not has_cuda():
        message = "no GPU worker is running: use device auto or cpu, or start a worker on a machine with a GPU"
        raise InvalidInput((*HP, "device"), message)


def with_batch_size(hp: dict[str, Any], n_points: int) -> dict[str, Any]:
    """hp with its batch_size resolved: one not given is all the training points, at most 32
    (so that the first request on a small dataset works)."""
    if hp["batch_size"] is not None:
        return hp
    train = training_points(n_points, hp["validation_fraction"])
    return {**hp, "batch_size": max(1, min(TrainConfig().batch_size, train))}


def _check_trial(hp: dict[str, Any], n_points: int, settings: Settings, loc: tuple[str | int, ...]) -> int:
    """Check one training as the engine will; its work (points x epochs)."""
    # A sweep's trial (loc body.trials.k) is named in the message too, as the engine names it
    # (TrainingInputError.in_trial): there is no trials field in the body for loc to point at.
    said = f"trial {loc[-1]}: " if loc[:-1] == ("body", "trials") else ""
    if hp["epochs"] > settings.max_epochs:
        raise InvalidInput((*loc, "epochs"), f"{said}at most {settings.max_epochs} epochs")
    _check_learning_rate(hp, loc, said)
    _check_dtype_range(hp, loc, said)
    try:
        check_config(config_from(hp))
        split_sizes(n_points, hp["validation_fraction"], hp["batch_size"])
    except model.TrainingInputError as exc:
        raise InvalidInput((*loc, exc.field or ""), f"{said}{exc}") from exc
    return n_points * int(hp["epochs"])


def _over_work(work: int, settings: Settings) -> InvalidInput:
    return InvalidInput((*HP, "epochs"), f"{work} point-epochs is over the limit of {settings.max_work}")


def check_runs(hps: list[dict[str, Any]], n_points: int, settings: Settings, *, sweep: bool) -> int:
    """Check resolved trainings on n_points as admission does (a job's one, or a sweep's trials,
    named body.trials.k): each as the engine will, the epoch limit, and the summed work; the work.
    The local CLI checks its runs with this too."""
    locs: list[tuple[str | int, ...]] = [("body", "trials", k) for k in range(len(hps))] if sweep else [HP]
    work = sum(_check_trial(hp, n_points, settings, loc) for hp, loc in zip(hps, locs, strict=True))
    if work > settings.max_work:
        raise _over_work(work, settings)
    return work


def _requested(request: Request, prefix: str, dataset_id: str) -> dict[str, Any]:
    """The columns a new job or sweep takes from its request (tables.Requested), queued."""
    return {
        "id": new_id(prefix),
        "owner": request.owner,
        "name": request.name,
        "status": Status.QUEUED,
        "dataset_id": dataset_id,
        "hyperparameters": request.hyperparameters,
        "max_runtime_seconds": request.max_runtime_seconds,
        "idempotency_key": request.idempotency_key,
        "request_hash": request.request_hash,
        "created_at": utcnow(),  # the response shows it: the INSERT's default would not reach the object
    }


def admit_job(*, session: Session, request: Request, settings: Settings, has_cuda: Callable[[], bool]) -> Admitted:
    """The job row (and inline dataset) of a job request, or InvalidInput / NotFound."""
    _check_base(request, has_cuda)
    n_points, dataset_id, inline = _dataset(session, request, settings)
    request = replace(request, hyperparameters=with_batch_size(request.hyperparameters, n_points))
    check_runs([request.hyperparameters], n_points, settings, sweep=False)
    hp = request.hyperparameters
    job = Job(
        **_requested(request, "job", dataset_id),
        history_bytes=storage.history_bytes(hp["epochs"], hp["validation_fraction"]),
        attempts=0,
        cancel_requested=False,
        epochs_completed=0,
        result=None,
    )
    return Admitted(job, [inline] if inline else [], inline is not None)


def sweep_trials(
    grid: dict[str, list[Any]] | None, random: dict[str, Any] | None, settings: Settings
) -> list[dict[str, Any]]:
    """Each trial's varied values, in trial-index order; InvalidInput past the trial limit
    (counted before any trial is made)."""
    if grid is not None:
        count = grid_size(grid)
        where: tuple[str, ...] = ("body", "grid")
    else:
        assert random is not None
        count, where = random["trials"], ("body", "random", "trials")
    if count > settings.max_trials:
        raise InvalidInput(where, f"{count} trials is over the limit of {settings.max_trials}")
    return trials(grid, random)


def chunk_spans(epochs: list[int], settings: Settings) -> list[tuple[int, int]]:
    """Consecutive trial ranges [lo, hi): at most sweep_chunk_trials trials each, and at most
    max_chunk_history loss entries (trials x the longest run), which the engine holds in memory."""
    spans: list[tuple[int, int]] = []
    lo, longest = 0, 0
    for k, e in enumerate(epochs):
        longest = max(longest, e)
        if k > lo and (k - lo >= settings.sweep_chunk_trials or (k - lo + 1) * longest > settings.max_chunk_history):
            spans.append((lo, k))
            lo, longest = k, e
    spans.append((lo, len(epochs)))
    return spans


def halving_chunks(
    halving: dict[str, Any], objective: str, varied: list[dict[str, Any]], epochs: int, settings: Settings
) -> tuple[list[tuple[int, int]], int]:
    """A halving sweep's chunks (one per bracket) and the epochs it plans; InvalidInput naming the field."""
    where = ("body", "halving")
    _check_halving(halving, varied, epochs)
    spans, planned = [], 0
    for b, lo, hi in brackets(halving, len(varied)):
        if (hi - lo) * epochs > settings.max_chunk_history:
            message = f"bracket {b} of {hi - lo} trials x {epochs} epochs is over {settings.max_chunk_history}"
            raise InvalidInput(where, f"{message}, the most one engine call holds: use fewer trials or brackets")
        spans.append((lo, hi))
        planned += halving_of(halving, objective, b).planned_epochs(hi - lo, epochs)
    return spans, planned


def _check_halving(halving: dict[str, Any], varied: list[dict[str, Any]], epochs: int) -> None:
    """InvalidInput naming the field of a halving that cannot rank these trials of these epochs."""
    where = ("body", "halving")
    if any("epochs" in v for v in varied):
        raise InvalidInput((*where,), "halving sets each trial's epochs by its rungs: do not vary epochs")
    if halving["min_epochs"] > epochs:
        raise InvalidInput((*where, "min_epochs"), f"min_epochs {halving['min_epochs']} is past the {epochs} epochs")
    last_first_rung = halving["min_epochs"] * halving["reduction_factor"] ** (halving["brackets"] - 1)
    if last_first_rung > epochs:
        message = f"the last bracket's first rung, {last_first_rung} epochs, is past the {epochs} epochs"
        raise InvalidInput((*where, "brackets"), message)


def check_search(
    spec: dict[str, Any], halving: dict[str, Any] | None, base: dict[str, Any], n_points: int, settings: Settings
) -> None:
    """InvalidInput naming the field of a search that may not run on n_points. Its trials are
    not known yet: each is checked as the engine will at the ends of every range and at every
    value listed, and counted at the longest. The local CLI checks its search with this too."""
    where = ("body", "search")
    corners = search.corners(spec)
    for values in corners:
        _check_trial(with_batch_size({**base, **values}, n_points), n_points, settings, where)
    longest, trials = search.longest(spec, base["epochs"]), spec["trials"]
    if trials * n_points * longest > settings.max_work:
        raise _over_work(trials * n_points * longest, settings)
    batch = min(spec["batch"], trials)
    if batch * longest > settings.max_chunk_history:
        message = (
            f"{batch} trials x {longest} epochs is over {settings.max_chunk_history}, the most one engine call holds"
        )
        raise InvalidInput((*where, "batch"), message)
    if halving is not None:
        _check_halving(halving, corners, base["epochs"])


def admit_sweep(*, session: Session, request: Request, settings: Settings, has_cuda: Callable[[], bool]) -> Admitted:
    """The sweep row with its chunks and trials (and inline dataset), or InvalidInput / NotFound."""
    _check_base(request, has_cuda)
    n_points, dataset_id, inline = _dataset(session, request, settings)
    base = request.hyperparameters
    objective = request.objective or default_objective(base)
    if objective == "final_validation_loss" and base["validation_fraction"] == 0:
        raise InvalidInput(("body", "objective"), "final_validation_loss needs a validation_fraction > 0")
    request = replace(request, hyperparameters=with_batch_size(base, n_points))
    if request.search is not None:
        spec, hp = request.search, request.hyperparameters
        check_search(spec, request.halving, hp, n_points, settings)
        # Its trials are asked as it runs: until then each row holds the base.
        resolved = [hp] * spec["trials"]
        spans = [(0, spec["trials"])]
        epochs_total = search.planned_epochs(spec, request.halving, objective, hp["epochs"])
        most = spec["trials"] * search.longest(spec, hp["epochs"])
    else:
        varied = sweep_trials(request.grid, request.random, settings)
        resolved = [with_batch_size({**base, **v}, n_points) for v in varied]
        check_runs(resolved, n_points, settings, sweep=True)
        # Storage and work count every trial at its full epochs: at most what a halving sweep writes.
        spans = chunk_spans([hp["epochs"] for hp in resolved], settings)
        epochs_total = most = sum(hp["epochs"] for hp in resolved)
        if request.halving is not None:
            spans, epochs_total = halving_chunks(request.halving, objective, varied, base["epochs"], settings)
    sweep = Sweep(
        **_requested(request, "sw", dataset_id),
        grid=request.grid,
        random=request.random,
        search=request.search,
        halving=request.halving,
        objective=objective,
        trials_total=len(resolved),
        epochs_total=epochs_total,
        # What the sweep may store: every trial to its last epoch (a halving sweep stores less).
        history_bytes=storage.history_bytes(most, base["validation_fraction"]),
    )
    chunks = [
        SweepChunk(
            id=new_id("swc"),
            sweep_id=sweep.id,
            lo=lo,
            hi=hi,
            status=Status.QUEUED,
            max_runtime_seconds=request.max_runtime_seconds,
            attempts=0,
            cancel_requested=False,
            epochs_completed=0,
        )
        for lo, hi in spans
    ]
    trials = [
        Trial(sweep_id=sweep.id, index=k, hyperparameters=hp, status=Status.QUEUED) for k, hp in enumerate(resolved)
    ]
    return Admitted(sweep, [*([inline] if inline else []), *chunks, *trials], inline is not None)


def enqueue(
    *, session: Session, admitted: Admitted, settings: Settings, dispatch: Callable[[str, str], None]
) -> tuple[Job | Sweep, bool]:
    """Store what was admitted, then dispatch its runs (a job, or a sweep's chunks); (row, created).

    The quotas are checked in the storing transaction, as it stands before its commit: the
    owner's active jobs and sweeps, and their storage, which counts the new dataset (points sent
    inline) and what the new run's histories will store then. A retry with the same
    Idempotency-Key returns the first row, created False, and dispatches nothing. When the queue
    is down the row is taken back (QueueUnavailable), unless a worker has claimed it already:
    then the message did go out, and the row stands."""
    owner, limit = admitted.row.owner, settings.max_storage_bytes_per_owner
    row, created = lifecycle.submit(
        session=session,
        row=admitted.row,
        max_active=settings.max_active_jobs_per_owner,
        extra=admitted.extra,
        check=lambda: storage.check_room(session, owner, 0, limit),
    )
    if not created:
        return row, False
    if isinstance(row, Job):
        runs = [(row.id, lifecycle.queue_of(row.hyperparameters))]
    else:
        queue = lifecycle.queue_of(row.hyperparameters)
        runs = [(c.id, queue) for c in admitted.extra if isinstance(c, SweepChunk)]
    try:
        for run_id, queue in runs:
            dispatch(run_id, queue)
    except Exception as exc:
        if lifecycle.withdraw(session=session, row=row, dataset_sent_inline=admitted.inline):
            raise QueueUnavailable("the job queue is unavailable; nothing was stored, try again shortly") from exc
        # Read as its worker left it (the row object was made here, in no session).
        if isinstance(row, Job):
            return lifecycle.get_job(session=session, owner=row.owner, job_id=row.id), True
        return lifecycle.get_sweep(session=session, owner=row.owner, sweep_id=row.id), True
    return row, True
