"""The `tinytrain` commands that talk to a server: submit, jobs, sweeps, datasets, and the
service's side of `tinytrain sweep --server` (cli.py registers them on its app).

Built on tinytrain.client alone: they run where only the client is installed. Every command takes
--server (or TINYTRAIN_URL) and --key (or TINYTRAIN_API_KEY). Whatever goes wrong with the service
ends as one line on stderr and exit status 2 (tinytrain.client's errors: the server's detail, or
"cannot reach URL"), never a traceback; a job or sweep followed to its end exits 1 when it did not
succeed. --json prints only JSON on stdout; progress and messages go to stderr, the progress bar
only to a terminal.
"""

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, cast, get_args

import typer

from tinytrain import render
from tinytrain.client import Client, ClientError
from tinytrain.flags import (
    CursorOption,
    Id,
    JsonOption,
    KeyOption,
    Limit,
    MaxPoints,
    OrderBy,
    ServerOption,
    Start,
    StatusFilter,
    Stop,
    SweepAsk,
    Top,
    WaitOption,
    given_hyperparameters,
)
from tinytrain.wire import (
    ACTIVE,
    Job,
    JobProgressEvent,
    JobSummary,
    ModelFormat,
    Page,
    Status,
    Sweep,
    SweepSummary,
    WebhookEvent,
)

Run = TypeVar("Run", Job, Sweep)
Summary = TypeVar("Summary", JobSummary, SweepSummary)

jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a server: list, show, result, cancel, watch, delete.")
sweeps_app = typer.Typer(no_args_is_help=True, help="Sweeps on a server: list, show, trials, cancel, watch, delete.")
datasets_app = typer.Typer(no_args_is_help=True, help="Datasets stored on a server: list, show, delete.")
EVENTS = list(get_args(WebhookEvent))
webhooks_app = typer.Typer(
    no_args_is_help=True, help="Webhook endpoints: create, list, test, deliveries, retry, rotate-secret, delete."
)


@contextmanager
def connected(server: str | None, key: str | None) -> Iterator[Client]:
    """A Client of --server with --key; the client's errors as one line and exit status 2."""
    if not server:
        render.fail("no server: give --server URL or set TINYTRAIN_URL")
    if not key:
        render.fail("no API key: give --key KEY or set TINYTRAIN_API_KEY (`tinytrain keys create` on the server)")
    try:
        with Client(server, key) as client:
            yield client
    except ClientError as exc:
        render.fail(str(exc))
    except OSError as exc:  # a file to upload that cannot be read
        render.fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


def on_server(command: Callable[..., None]) -> Callable[..., None]:
    """command(client, ...) as a command of --server and --key (typer reads the signature): it is
    called with their Client, connected(), and the rest of its arguments."""

    @functools.wraps(command)
    def with_client(*args: Any, server: str | None = None, key: str | None = None, **kwargs: Any) -> None:
        with connected(server, key) as client:
            command(client, *args, **kwargs)

    own = list(inspect.signature(command).parameters.values())[1:]  # less the client
    rest = [p for p in own if p.kind is not p.VAR_KEYWORD]
    options = [
        inspect.Parameter("server", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ServerOption),
        inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KeyOption),
    ]
    with_client.__signature__ = inspect.Signature([*rest, *options, *own[len(rest) :]])  # type: ignore[attr-defined]
    return with_client


@dataclass(frozen=True)
class Kind(Generic[Run, Summary]):
    """What the jobs and the sweeps commands differ in: the noun and type of the run, the client's
    methods for it, and how one (show) and a page of them (list) are printed."""

    noun: str
    run: type[Run]
    get: Callable[[Client, str], Run]
    page: Callable[..., Page[Summary]]
    cancel: Callable[[Client, str], Run]
    delete: Callable[[Client, str], None]
    wait: Callable[[Client, str], Run]
    events: Callable[[Client, str], Iterator[Any]]
    show: Callable[[Run], None]
    table: Callable[[list[Summary]], None]


JOBS = Kind(
    noun="job",
    run=Job,
    get=Client.get,
    page=Client.list_jobs,
    cancel=Client.cancel,
    delete=Client.delete,
    wait=Client.wait,
    events=Client.events,
    show=render.job,
    table=render.jobs,
)
SWEEPS = Kind(
    noun="sweep",
    run=Sweep,
    get=Client.get_sweep,
    page=Client.list_sweeps,
    cancel=Client.cancel_sweep,
    delete=Client.delete_sweep,
    wait=Client.wait_sweep,
    events=Client.sweep_events,
    show=render.sweep,
    table=render.sweeps,
)


def follow(client: Client, kind: Kind[Run, Any], run_id: str) -> Run:
    """The run once it has ended, with a progress bar of its events on a terminal (epochs; the
    loss of a job, the trials ended of a sweep). Ctrl-C stops following, not the run: exit 130."""
    try:
        if not render.bar_wanted():
            return kind.wait(client, run_id)
        run: Run | None = None
        with render.bar(run_id) as progress:
            for event in kind.events(client, run_id):
                if isinstance(event, kind.run):
                    run = event
                    render.advance(progress, int(progress.n), event.progress.epochs)
                    progress.set_description(f"{event.id} {event.status}")
                elif isinstance(event, JobProgressEvent):
                    loss = {"loss": f"{event.loss[-1]:.6g}"} if event.loss else {}
                    render.advance(progress, event.epochs_completed, event.epochs, **loss)
                else:
                    counts = event.trials
                    ended = counts.succeeded + counts.failed + counts.cancelled
                    render.advance(progress, event.epochs_completed, event.epochs, trials=f"{ended}/{counts.total}")
        return run if run is not None else kind.get(client, run_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following {run_id}; it goes on (tinytrain {kind.noun}s cancel {run_id})", err=True)
        raise typer.Exit(130) from None


def _exit_unless_succeeded(run: Job | Sweep) -> None:
    if run.status != Status.SUCCEEDED:
        error = f": {run.error.code}: {run.error.message}" if run.error else ""
        typer.echo(f"{run.id} {run.status}{error}", err=True)
        raise typer.Exit(1)


def _created(run: Job | Sweep, kind: Kind[Any, Any], as_json: bool) -> None:
    """What submit and sweep print of the run they made, when not told to wait for it."""
    if as_json:
        render.echo_json(run)
        return
    typer.echo(run.id)
    if sys.stderr.isatty():
        typer.echo(f"follow it: tinytrain {kind.noun}s watch {run.id}", err=True)


def _shared_commands(app: typer.Typer, kind: Kind[Run, Summary]) -> None:
    """list, show, cancel and delete, which jobs and sweeps have alike."""
    noun = kind.noun

    @app.command("list", help=f"The {noun}s of the key's owner, newest first.")
    @on_server
    def list_(
        client: Client,
        status: StatusFilter = None,
        limit: Limit = 20,
        cursor: CursorOption = None,
        as_json: JsonOption = False,
    ) -> None:
        render.page(kind.page(client, status=status, limit=limit, cursor=cursor), kind.table, as_json)

    @app.command("show", help=f"A {noun} as it is now: status, progress, hyperparameters, error, results.")
    @on_server
    def show(client: Client, run_id: Id, as_json: JsonOption = False) -> None:
        run = kind.get(client, run_id)
        if as_json:
            render.echo_json(run)
        else:
            kind.show(run)

    @app.command("cancel", help=f"Cancel a {noun}: what is queued never starts, what runs stops within a second.")
    @on_server
    def cancel(client: Client, run_id: Id, as_json: JsonOption = False) -> None:
        run = kind.cancel(client, run_id)
        if as_json:
            render.echo_json(run)
            return
        requested = " (cancel requested: it stops within a second)" if run.status in ACTIVE else ""
        typer.echo(f"{run.id} {run.status}{requested}")

    @app.command("delete", help=f"Delete an ended {noun} with its results (a job: and its dataset if sent inline).")
    @on_server
    def delete(client: Client, run_id: Id) -> None:
        kind.delete(client, run_id)
        typer.echo(f"deleted {run_id}")


# Jobs.


@on_server
def submit(
    client: Client,
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
    **flags: Any,
) -> None:
    """Submit a training job to a server and print its id.

    With --wait, follow it and print the seven parameters and the final loss (--json: {"job":
    ..., "result": ...}); exit status 1 unless it succeeded. The CSV file is stored on the server
    once: submitting the same file again reuses it. Train flags left out take the service's
    defaults."""
    if (data is None) == (dataset is None):
        render.fail("give a CSV file or --dataset ds_..., one of the two")
    try:
        hp = given_hyperparameters(ctx, flags)
    except ValueError as exc:
        render.fail(str(exc))
    stored = dataset if data is None else client.upload_csv_once(data)
    job = client.submit(stored, hyperparameters=hp, name=name, max_runtime_seconds=max_runtime)
    if wait:
        _report_job(client, follow(client, JOBS, job.id), as_json)
    else:
        _created(job, JOBS, as_json)


def _report_job(client: Client, job: Job, as_json: bool) -> None:
    """An ended job as `submit --wait` and `jobs watch` print it; exit 1 unless it succeeded."""
    result = client.result(job.id) if job.status == Status.SUCCEEDED else None
    if as_json:
        render.echo_json({"job": job, "result": result})
    elif result is not None:
        render.parameters(result.parameters.model_dump())
        render.final_loss(result.final_loss, result.epochs_completed, job.device)
    _exit_unless_succeeded(job)


_shared_commands(jobs_app, JOBS)


@jobs_app.command("result")
@on_server
def jobs_result(
    client: Client,
    job_id: Id,
    start: Start = None,
    stop: Stop = None,
    max_points: MaxPoints = None,
    as_json: JsonOption = False,
) -> None:
    """A succeeded job's seven parameters and final loss.

    --json: the Result with its loss histories, whole or sliced."""
    result = client.result(job_id, start=start, stop=stop, max_points=max_points)
    if as_json:
        render.echo_json(result)
        return
    render.parameters(result.parameters.model_dump())
    typer.echo(f"initial loss = {render.number(result.initial_loss)}")
    render.final_loss(result.final_loss, result.epochs_completed)


@jobs_app.command("export")
@on_server
def jobs_export(
    client: Client,
    run_id: Id,
    format: Annotated[str, typer.Option("--format", metavar="onnx|pt2|json")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The file to write.")] = None,
    trial: Annotated[int | None, typer.Option(min=0, help="With a sweep's id: that trial's network.")] = None,
) -> None:
    """The trained network as a file: ONNX (onnxruntime and most runtimes), a torch.export
    program, or JSON with the formula. Written to --output (default: ID.FORMAT, ID-TRIAL.FORMAT)."""
    if format not in get_args(ModelFormat):
        render.fail(f"--format {format}: one of {', '.join(get_args(ModelFormat))}")
    content = client.export(run_id, cast(ModelFormat, format), trial=trial)
    path = output or Path(f"{run_id}{'' if trial is None else f'-{trial}'}.{format}")
    path.write_bytes(content)
    typer.echo(f"wrote {path} ({len(content):,} bytes)")


@jobs_app.command("watch")
@on_server
def jobs_watch(client: Client, job_id: Id, as_json: JsonOption = False) -> None:
    """Follow a job to its end, then print it as `submit --wait` does.

    A progress bar on a terminal; exit status 1 unless the job succeeded."""
    _report_job(client, follow(client, JOBS, job_id), as_json)


# Sweeps.


def sweep_on_server(
    data: Path, asked: SweepAsk, *, server: str, key: str | None, top: int, wait: bool, as_json: bool
) -> None:
    """`tinytrain sweep DATA.csv --server URL ...`: the sweep the same flags describe locally,
    run by the service; prints its id, or with --wait follows it and prints the leaderboard."""
    with connected(server, key) as client:
        dataset_id = client.upload_csv_once(data).id
        sweep = client.sweep(
            dataset_id,
            hyperparameters=asked.hyperparameters,
            grid=asked.grid,
            random=asked.random,
            search=asked.search,
            objective=asked.objective,
            halving=asked.halving,
        )
        if wait:
            _report_sweep(client, follow(client, SWEEPS, sweep.id), top, as_json)
        else:
            _created(sweep, SWEEPS, as_json)


def _report_sweep(client: Client, sweep: Sweep, top: int, as_json: bool) -> None:
    """An ended sweep's leaderboard (--json: the Sweep and every trial in index order); exit 1
    unless it succeeded."""
    if as_json:
        render.echo_json({"sweep": sweep, "trials": list(client.all_trials(sweep.id))})
    else:
        best = client.trials(sweep.id, order_by="objective", limit=min(100, max(1, top))).items[:top]
        render.leaderboard(render.varied(sweep), sweep.objective, best, rungs=sweep.halving is not None)
    _exit_unless_succeeded(sweep)


_shared_commands(sweeps_app, SWEEPS)


@sweeps_app.command("trials")
@on_server
def sweeps_trials(
    client: Client,
    sweep_id: Id,
    order_by: OrderBy = "objective",
    limit: Limit = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """The sweep's trials: the leaderboard (best objective first) or in index order."""
    sweep = client.get_sweep(sweep_id)
    page = client.trials(sweep_id, order_by=order_by, limit=limit, cursor=cursor)
    rungs = sweep.halving is not None
    render.page(
        page, lambda trials: render.leaderboard(render.varied(sweep), sweep.objective, trials, rungs=rungs), as_json
    )


@sweeps_app.command("watch")
@on_server
def sweeps_watch(client: Client, sweep_id: Id, top: Top = 10, as_json: JsonOption = False) -> None:
    """Follow a sweep to its end, then print the leaderboard.

    A progress bar on a terminal; exit status 1 unless the sweep succeeded."""
    _report_sweep(client, follow(client, SWEEPS, sweep_id), top, as_json)


# Datasets.


@datasets_app.command("list")
@on_server
def datasets_list(client: Client, limit: Limit = 20, cursor: CursorOption = None, as_json: JsonOption = False) -> None:
    """The datasets of the key's owner, newest first."""
    render.page(client.list_datasets(limit=limit, cursor=cursor), render.datasets, as_json)


@datasets_app.command("show")
@on_server
def datasets_show(client: Client, dataset_id: Id, as_json: JsonOption = False) -> None:
    """A dataset: its points' count and ranges, and its hash."""
    dataset = client.get_dataset(dataset_id)
    if as_json:
        render.echo_json(dataset)
        return
    for name, value in dataset.model_dump(mode="json").items():
        typer.echo(f"{name}: {value}")


@datasets_app.command("delete")
@on_server
def datasets_delete(client: Client, dataset_id: Id) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    client.delete_dataset(dataset_id)
    typer.echo(f"deleted {dataset_id}")


# Webhooks.


@webhooks_app.command("create")
@on_server
def webhooks_create(
    client: Client,
    url: Annotated[str, typer.Argument(help="Where to POST the events: an http(s) URL.", show_default=False)],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            metavar="EVENT",
            help="job.succeeded, ...: repeat it; default: all.",
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the endpoint is for.")] = None,
    as_json: JsonOption = False,
) -> None:
    """A new endpoint; prints its signing secret, which is shown only now."""
    unknown = [e for e in event or [] if e not in EVENTS]
    if unknown:
        render.fail(f"--event {unknown[0]}: one of {', '.join(EVENTS)}")
    made = client.create_webhook(url, cast(list[WebhookEvent], event or EVENTS), description=description)
    if as_json:
        render.echo_json(made)
        return
    typer.echo(f"created {made.id} for {', '.join(made.events)}")
    typer.echo(f"secret (shown only now): {made.secret}")


@webhooks_app.command("list")
@on_server
def webhooks_list(client: Client, as_json: JsonOption = False) -> None:
    """The key owner's endpoints, newest first."""
    found = client.list_webhooks()
    if as_json:
        render.echo_json({"items": [w.model_dump(mode="json") for w in found]})
        return
    render.webhooks(found)


@webhooks_app.command("deliveries")
@on_server
def webhooks_deliveries(
    client: Client, webhook_id: Id, limit: Limit = 20, cursor: CursorOption = None, as_json: JsonOption = False
) -> None:
    """Each try of each delivery to the endpoint, newest first."""
    render.page(client.webhook_deliveries(webhook_id, limit=limit, cursor=cursor), render.attempts, as_json)


@webhooks_app.command("test")
@on_server
def webhooks_test(client: Client, webhook_id: Id) -> None:
    """Send the endpoint a `ping` event."""
    typer.echo(f"queued {client.test_webhook(webhook_id).id}")


@webhooks_app.command("retry")
@on_server
def webhooks_retry(
    client: Client,
    webhook_id: Id,
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id (msg_...).", show_default=False)],
) -> None:
    """Send a delivery again now, with its webhook-id."""
    typer.echo(f"queued {client.retry_webhook_delivery(webhook_id, delivery_id).id}")


@webhooks_app.command("rotate-secret")
@on_server
def webhooks_rotate_secret(client: Client, webhook_id: Id) -> None:
    """A new signing secret (shown only now); the old one signs nothing more."""
    typer.echo(f"secret (shown only now): {client.rotate_webhook_secret(webhook_id).secret}")


@webhooks_app.command("delete")
@on_server
def webhooks_delete(client: Client, webhook_id: Id) -> None:
    """Delete the endpoint: nothing more is sent to it."""
    client.delete_webhook(webhook_id)
    typer.echo(f"deleted {webhook_id}")
