"""The `tinytrain` commands that talk to a server: submit, jobs, sweeps, datasets, and the
service's side of `tinytrain sweep --server` (cli.py registers them on its app).

Every command takes --server (or TINYTRAIN_URL) and --key (or TINYTRAIN_API_KEY). Whatever goes
wrong with the service ends as one line on stderr and exit status 2 (tinytrain.client's errors:
the server's detail, or "cannot reach URL"), never a traceback; a job or sweep followed to its end
exits 1 when it did not succeed. --json prints only JSON on stdout; progress and messages go to
stderr, the progress bar only to a terminal.
"""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from pydantic import BaseModel
from tqdm import tqdm

from jobs.status import ACTIVE, Status
from tinytrain.client import (
    Client,
    ClientError,
    Dataset,
    Job,
    JobProgressEvent,
    Result,
    Sweep,
    SweepProgressEvent,
    Trial,
)

ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="TINYTRAIN_URL", help="The service's URL, http://HOST:PORT.", show_default=False),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="TINYTRAIN_API_KEY", help="An API key of the service.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow it to its end (a progress bar on a terminal).")]
Id = Annotated[str, typer.Argument(help="The id, as `list` shows it.", show_default=False)]
StatusFilter = Annotated[Status | None, typer.Option("--status", help="Only those in this status.")]
Limit = Annotated[int, typer.Option(min=1, max=100, help="At most this many (one page).")]
CursorOption = Annotated[str | None, typer.Option(help="The next page: the cursor the previous one printed.")]
Start = Annotated[int | None, typer.Option(min=0, help="The first epoch of a slice of the histories, from 0.")]
Stop = Annotated[int | None, typer.Option(min=1, help="The epoch after the slice's last.")]
MaxPoints = Annotated[int | None, typer.Option(min=2, help="At most this many history entries, evenly spaced.")]

jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a server: list, show, result, cancel, watch, delete.")
sweeps_app = typer.Typer(no_args_is_help=True, help="Sweeps on a server: list, show, trials, cancel, watch, delete.")
datasets_app = typer.Typer(no_args_is_help=True, help="Datasets stored on a server: list, show, delete.")

GIVEN = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")  # the sources of a parameter that the user gave
PARAMETERS = ("w11", "w12", "b11", "b12", "w21", "w22", "b2")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


@contextmanager
def connected(server: str | None, key: str | None) -> Iterator[Client]:
    """A Client of --server with --key; the client's errors as one line and exit status 2."""
    if not server:
        fail("no server: give --server URL or set TINYTRAIN_URL")
    if not key:
        fail("no API key: give --key KEY or set TINYTRAIN_API_KEY (`tinytrain keys create` on the server)")
    try:
        with Client(server, key) as client:
            yield client
    except ClientError as exc:
        fail(str(exc))
    except OSError as exc:  # a file to upload that cannot be read
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


def _echo_json(value: BaseModel | dict[str, Any] | None) -> None:
    if isinstance(value, BaseModel):
        typer.echo(value.model_dump_json())
    else:
        typer.echo(json.dumps(_jsonable(value)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _number(value: float | None) -> str:
    return f"{value:.10g}" if value is not None else "-"


def _bar_wanted() -> bool:
    # A bar redraws itself with carriage returns: in a log file or a pipe that is noise.
    return sys.stderr.isatty()


def given_hyperparameters(ctx: typer.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """The train flags given on the command line, as hyperparameters: those left out are left to
    the service's defaults (which may depend on the dataset, as batch_size does)."""
    hp: dict[str, Any] = {}
    for name, value in flags.items():
        source = ctx.get_parameter_source(name)
        if source is None or source.name not in GIVEN:
            continue
        if name == "no_shuffle":
            hp["shuffle"] = not value
        elif name == "init":
            try:
                hp["initial_parameters"] = json.loads(value)
            except ValueError:
                fail(f"--init must be a JSON object of the seven parameters, not {value!r}")
        else:
            hp[name] = value
    return hp


def _dataset_of(client: Client, data: Path | None, dataset: str | None) -> str:
    """The id of --dataset, or of the CSV file (stored once: the same file again reuses it)."""
    if (data is None) == (dataset is None):
        fail("give a CSV file or --dataset ds_..., one of the two")
    if dataset is not None:
        return dataset
    assert data is not None
    return client.upload_csv_once(data).id


# Jobs.


def submit(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Argument(help="CSV file: two numeric columns x,y, optional header row.", show_default=False)
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="A stored dataset (ds_...) instead of a CSV file.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the job.")] = None,
    max_runtime: Annotated[
        float | None, typer.Option("--max-runtime", help="Seconds the run may take before it fails.")
    ] = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
    **flags: Any,
) -> None:
    """Submit a training job to a server and print its id.

    With --wait, follow it and print the seven parameters and the final loss (--json: {"job":
    ..., "result": ...}); exit status 1 unless it succeeded. The CSV file is stored on the server
    once: submitting the same file again reuses it. Train flags left out take the service's
    defaults."""
    hp = given_hyperparameters(ctx, flags)
    with connected(server, key) as client:
        dataset_id = _dataset_of(client, data, dataset)
        job = client.submit(dataset_id, hyperparameters=hp, name=name, max_runtime_seconds=max_runtime)
        if wait:
            _follow_job(client, job.id, as_json)
            return
        if as_json:
            _echo_json(job)
            return
        typer.echo(job.id)
        if sys.stderr.isatty():
            typer.echo(f"follow it: tinytrain jobs watch {job.id}", err=True)


def _follow_job(client: Client, job_id: str, as_json: bool) -> None:
    """Follow the job to its end, print it; exit 1 unless it succeeded."""
    try:
        job = _watch_job(client, job_id) if _bar_wanted() else client.wait(job_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following {job_id}; it goes on (tinytrain jobs cancel {job_id})", err=True)
        raise typer.Exit(130) from None
    result = client.result(job.id) if job.status == Status.SUCCEEDED else None
    if as_json:
        _echo_json({"job": job, "result": result})
    elif result is not None:
        _print_parameters(result.parameters.model_dump())
        typer.echo(f"final loss = {_number(result.final_loss)} after {result.epochs_completed} epochs ({job.device})")
    if job.status != Status.SUCCEEDED:
        error = f": {job.error.code}: {job.error.message}" if job.error else ""
        typer.echo(f"{job.id} {job.status}{error}", err=True)
        raise typer.Exit(1)


def _watch_job(client: Client, job_id: str) -> Job:
    """The job's events as a progress bar (epochs, loss, ETA) on stderr until it ends; the Job."""
    job: Job | None = None
    with tqdm(desc=job_id, unit="epoch", file=sys.stderr, dynamic_ncols=True) as bar:
        for event in client.events(job_id):
            if isinstance(event, JobProgressEvent):
                bar.total = event.epochs
                bar.update(event.epochs_completed - bar.n)
                if event.loss:
                    bar.set_postfix(loss=f"{event.loss[-1]:.6g}", refresh=False)
            else:
                job = event
                bar.total = job.progress.epochs
                bar.set_description(f"{job.id} {job.status}")
    return job if job is not None else client.get(job_id)


def _print_parameters(parameters: dict[str, float]) -> None:
    for name in PARAMETERS:
        typer.echo(f"{name:>4} = {parameters[name]:.10g}")


@jobs_app.command("list")
def jobs_list(
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """The jobs of the key's owner, newest first."""
    with connected(server, key) as client:
        page = client.list_jobs(status=status, limit=limit, cursor=cursor)
    if as_json:
        _echo_json(page)
        return
    typer.echo(f"{'id':<28}  {'status':<9}  {'epochs':>17}  {'last loss':>12}  {'created':<19}  name")
    for job in page.items:
        epochs = f"{job.progress.epochs_completed}/{job.progress.epochs}"
        created = f"{job.created_at:%Y-%m-%d %H:%M:%S}"
        loss = f"{job.progress.last_loss:.6g}" if job.progress.last_loss is not None else "-"
        typer.echo(f"{job.id:<28}  {job.status:<9}  {epochs:>17}  {loss:>12}  {created:<19}  {job.name or ''}")
    _more(page.next_cursor)


def _more(cursor: str | None) -> None:
    if cursor is not None:
        typer.echo(f"more: --cursor {cursor}", err=True)


@jobs_app.command("show")
def jobs_show(job_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None) -> None:
    """A job: status, progress, hyperparameters, error, and its result's parameters."""
    with connected(server, key) as client:
        job = client.get(job_id)
    if as_json:
        _echo_json(job)
        return
    _print_run(job)
    typer.echo(f"progress: {job.progress.epochs_completed}/{job.progress.epochs} epochs")
    if job.result is not None:
        _print_parameters(job.result.parameters.model_dump())
        typer.echo(f"final loss = {_number(job.result.final_loss)} after {job.result.epochs_completed} epochs")


def _print_run(run: Job | Sweep) -> None:
    typer.echo(f"id: {run.id}" + (f"  ({run.name})" if run.name else ""))
    typer.echo(f"status: {run.status}" + (f"  {run.error.code}: {run.error.message}" if run.error else ""))
    typer.echo(f"dataset: {run.dataset_id}")
    typer.echo(f"hyperparameters: {json.dumps(run.hyperparameters)}")
    times = [f"{what} {when:%Y-%m-%d %H:%M:%S}" for what, when in _times(run) if when is not None]
    typer.echo(f"times: {', '.join(times)}")
    if run.device is not None:
        typer.echo(f"device: {run.device}, attempts: {run.attempts}")


def _times(run: Job | Sweep) -> list[tuple[str, Any]]:
    return [("created", run.created_at), ("started", run.started_at), ("finished", run.finished_at)]


@jobs_app.command("result")
def jobs_result(
    job_id: Id,
    start: Start = None,
    stop: Stop = None,
    max_points: MaxPoints = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """A succeeded job's seven parameters and final loss.

    --json: the Result with its loss histories, whole or sliced."""
    with connected(server, key) as client:
        result: Result = client.result(job_id, start=start, stop=stop, max_points=max_points)
    if as_json:
        _echo_json(result)
        return
    _print_parameters(result.parameters.model_dump())
    typer.echo(f"initial loss = {_number(result.initial_loss)}")
    typer.echo(f"final loss = {_number(result.final_loss)} after {result.epochs_completed} epochs")


@jobs_app.command("cancel")
def jobs_cancel(job_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None) -> None:
    """Cancel a job: a queued one never starts, a running one stops within a second."""
    with connected(server, key) as client:
        job = client.cancel(job_id)
    if as_json:
        _echo_json(job)
        return
    requested = " (cancel requested: it stops within a second)" if job.status in ACTIVE else ""
    typer.echo(f"{job.id} {job.status}{requested}")


@jobs_app.command("watch")
def jobs_watch(job_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None) -> None:
    """Follow a job to its end, then print it as `submit --wait` does.

    A progress bar on a terminal; exit status 1 unless the job succeeded."""
    with connected(server, key) as client:
        _follow_job(client, job_id, as_json)


@jobs_app.command("delete")
def jobs_delete(job_id: Id, server: ServerOption = None, key: KeyOption = None) -> None:
    """Delete an ended job with its result (and its dataset if it was sent inline)."""
    with connected(server, key) as client:
        client.delete(job_id)
    typer.echo(f"deleted {job_id}")


# Sweeps.


@dataclass
class Draws:
    """What a sweep's flags say to try: --grid, or --random N with --random-seed and --range;
    and --objective."""

    grid: list[str] | None
    random: int | None
    random_seed: int
    ranges: list[str] | None
    objective: str | None


def sweep_on_server(
    ctx: typer.Context,
    data: Path,
    draws: Draws,
    *,
    server: str,
    key: str | None,
    top: int,
    wait: bool,
    as_json: bool,
    flags: dict[str, Any],
) -> None:
    """`tinytrain sweep DATA.csv --server URL ...`: the sweep the same flags describe locally,
    run by the service; prints its id, or with --wait follows it and prints the leaderboard."""
    from tinytrain.cli import _grid_values, _named, _range  # the flags read as the local sweep reads them

    hp = given_hyperparameters(ctx, flags)
    grid: dict[str, Any] | None = None
    random: dict[str, Any] | None = None
    try:
        if draws.random is None:
            grid = _named(draws.grid or [], _grid_values, "--grid")
        else:
            ranges = _named(draws.ranges or [], _range, "--range")
            random = {"trials": draws.random, "seed": draws.random_seed, **ranges}
    except ValueError as exc:
        fail(str(exc))
    with connected(server, key) as client:
        dataset_id = client.upload_csv_once(data).id
        sweep = client.sweep(dataset_id, hyperparameters=hp, grid=grid, random=random, objective=draws.objective)
        if wait:
            _follow_sweep(client, sweep.id, top, as_json)
            return
        if as_json:
            _echo_json(sweep)
            return
        typer.echo(sweep.id)
        if sys.stderr.isatty():
            typer.echo(f"follow it: tinytrain sweeps watch {sweep.id}", err=True)


def _follow_sweep(client: Client, sweep_id: str, top: int, as_json: bool) -> None:
    """Follow the sweep to its end; print the leaderboard (--json: the Sweep and every trial in
    index order); exit 1 unless it succeeded."""
    try:
        sweep = _watch_sweep(client, sweep_id) if _bar_wanted() else client.wait_sweep(sweep_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following {sweep_id}; it goes on (tinytrain sweeps cancel {sweep_id})", err=True)
        raise typer.Exit(130) from None
    if as_json:
        _echo_json({"sweep": sweep, "trials": list(client.all_trials(sweep_id))})
    else:
        _leaderboard(sweep, client.trials(sweep_id, order_by="objective", limit=min(100, max(1, top))).items[:top])
    if sweep.status != Status.SUCCEEDED:
        error = f": {sweep.error.code}: {sweep.error.message}" if sweep.error else ""
        typer.echo(f"{sweep.id} {sweep.status}{error}", err=True)
        raise typer.Exit(1)


def _watch_sweep(client: Client, sweep_id: str) -> Sweep:
    sweep: Sweep | None = None
    with tqdm(desc=sweep_id, unit="epoch", file=sys.stderr, dynamic_ncols=True) as bar:
        for event in client.sweep_events(sweep_id):
            if isinstance(event, SweepProgressEvent):
                bar.total = event.epochs
                bar.update(event.epochs_completed - bar.n)
                counts = event.trials
                ended = counts.succeeded + counts.failed + counts.cancelled
                bar.set_postfix(trials=f"{ended}/{counts.total}", refresh=False)
            else:
                sweep = event
                bar.total = sweep.progress.epochs
                bar.set_description(f"{sweep.id} {sweep.status}")
    return sweep if sweep is not None else client.get_sweep(sweep_id)


def _varied(sweep: Sweep) -> list[str]:
    """The hyperparameters the sweep varies: its grid's keys, or what its random draws."""
    if sweep.grid is not None:
        return list(sweep.grid)
    names = [k.removesuffix("_values") for k in (sweep.random or {}) if k not in ("trials", "seed")]
    return names


def _leaderboard(sweep: Sweep, trials: list[Trial]) -> None:
    names = _varied(sweep)
    typer.echo(f"{'index':>5}  " + "  ".join(f"{n:>14}" for n in names) + f"  {sweep.objective:>22}  {'status':>9}")
    for t in trials:
        values = "  ".join(f"{json.dumps(t.hyperparameters.get(n)):>14}" for n in names)
        typer.echo(f"{t.index:>5}  {values}  {_number(t.objective):>22}  {t.status:>9}")


@sweeps_app.command("list")
def sweeps_list(
    status: StatusFilter = None,
    limit: Limit = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """The sweeps of the key's owner, newest first."""
    with connected(server, key) as client:
        page = client.list_sweeps(status=status, limit=limit, cursor=cursor)
    if as_json:
        _echo_json(page)
        return
    typer.echo(f"{'id':<27}  {'status':<9}  {'objective':<21}  {'created':<19}  name")
    for s in page.items:
        created = f"{s.created_at:%Y-%m-%d %H:%M:%S}"
        typer.echo(f"{s.id:<27}  {s.status:<9}  {s.objective:<21}  {created:<19}  {s.name or ''}")
    _more(page.next_cursor)


@sweeps_app.command("show")
def sweeps_show(sweep_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None) -> None:
    """A sweep: status, trial counts, progress and the best trial so far."""
    with connected(server, key) as client:
        sweep = client.get_sweep(sweep_id)
    if as_json:
        _echo_json(sweep)
        return
    _print_run(sweep)
    typer.echo(f"{'grid' if sweep.grid is not None else 'random'}: {json.dumps(sweep.grid or sweep.random)}")
    counts = sweep.trials
    typer.echo(
        f"trials: {counts.total} ({counts.queued} queued, {counts.running} running, {counts.succeeded} succeeded, "
        f"{counts.failed} failed, {counts.cancelled} cancelled)"
    )
    typer.echo(f"progress: {sweep.progress.epochs_completed}/{sweep.progress.epochs} epochs")
    if sweep.best is not None:
        varied = {n: sweep.best.hyperparameters.get(n) for n in _varied(sweep)}
        best = sweep.best
        typer.echo(f"best: trial {best.index}, {sweep.objective} = {best.objective:.10g}, {json.dumps(varied)}")


@sweeps_app.command("trials")
def sweeps_trials(
    sweep_id: Id,
    order_by: Annotated[Literal["objective", "index"], typer.Option(help="objective: best first.")] = "objective",
    limit: Limit = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """The sweep's trials: the leaderboard (best objective first) or in index order."""
    with connected(server, key) as client:
        sweep = client.get_sweep(sweep_id)
        page = client.trials(sweep_id, order_by=order_by, limit=limit, cursor=cursor)
    if as_json:
        _echo_json(page)
        return
    _leaderboard(sweep, page.items)
    _more(page.next_cursor)


@sweeps_app.command("cancel")
def sweeps_cancel(
    sweep_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None
) -> None:
    """Cancel a sweep: queued trials never start, running ones stop within a second."""
    with connected(server, key) as client:
        sweep = client.cancel_sweep(sweep_id)
    if as_json:
        _echo_json(sweep)
        return
    typer.echo(f"{sweep.id} {sweep.status}" + (" (cancel requested)" if sweep.status in ACTIVE else ""))


@sweeps_app.command("watch")
def sweeps_watch(
    sweep_id: Id,
    top: Annotated[int, typer.Option(help="Rows of the leaderboard.")] = 10,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """Follow a sweep to its end, then print the leaderboard.

    A progress bar on a terminal; exit status 1 unless the sweep succeeded."""
    with connected(server, key) as client:
        _follow_sweep(client, sweep_id, top, as_json)


@sweeps_app.command("delete")
def sweeps_delete(sweep_id: Id, server: ServerOption = None, key: KeyOption = None) -> None:
    """Delete an ended sweep with its trials and results."""
    with connected(server, key) as client:
        client.delete_sweep(sweep_id)
    typer.echo(f"deleted {sweep_id}")


# Datasets.


@datasets_app.command("list")
def datasets_list(
    limit: Limit = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """The datasets of the key's owner, newest first."""
    with connected(server, key) as client:
        page = client.list_datasets(limit=limit, cursor=cursor)
    if as_json:
        _echo_json(page)
        return
    typer.echo(f"{'id':<27}  {'points':>9}  {'created':<19}  name")
    for d in page.items:
        typer.echo(f"{d.id:<27}  {d.n_points:>9}  {d.created_at:%Y-%m-%d %H:%M:%S}  {d.name or ''}")
    _more(page.next_cursor)


@datasets_app.command("show")
def datasets_show(
    dataset_id: Id, as_json: JsonOption = False, server: ServerOption = None, key: KeyOption = None
) -> None:
    """A dataset: its points' count and ranges, and its hash."""
    with connected(server, key) as client:
        dataset: Dataset = client.get_dataset(dataset_id)
    if as_json:
        _echo_json(dataset)
        return
    for name, value in dataset.model_dump(mode="json").items():
        typer.echo(f"{name}: {value}")


@datasets_app.command("delete")
def datasets_delete(dataset_id: Id, server: ServerOption = None, key: KeyOption = None) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    with connected(server, key) as client:
        client.delete_dataset(dataset_id)
    typer.echo(f"deleted {dataset_id}")
