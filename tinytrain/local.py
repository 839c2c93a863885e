"""The `tinytrain` commands that run the service's code in this process: train and sweep with no
server, serve, worker, keys and db (cli.py registers them on its app).

They need the service's packages (pip install 'tinytrain[server]'); cli.py imports this module only
where they are installed, and says what to install where they are not.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
from pydantic import ValidationError

import model
from api import schemas
from jobs import keys, migrate, search
from jobs.admission import check_runs, check_search, halving_chunks, sweep_trials, with_batch_size
from jobs.db import session_scope
from jobs.errors import InvalidInput
from jobs.hyperparameters import bracket_of, brackets, config_from, default_objective, halving_of, rung_reached
from jobs.results import trial_outcome
from jobs.settings import Settings, get_settings
from model.csvdata import parse_points
from model.fleet import Fleet
from model.halving import Halving
from model.training import cuda_available
from tinytrain import render
from tinytrain.flags import Data, SweepAsk, given_hyperparameters, with_train_flags

keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
db_app = typer.Typer(no_args_is_help=True, help="The job database.")

BAD_INPUT = (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, InvalidInput)  # ValueError: also pydantic's


def _fail(exc: Exception) -> NoReturn:
    message = str(exc)
    if isinstance(exc, ValidationError):
        parts = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        message = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in parts)
    elif isinstance(exc, InvalidInput):  # admission's, named as the schema's errors are
        loc = [str(p) for p in exc.loc if p not in ("body", "hyperparameters")]
        loc = loc[2:] if loc[:1] == ["trials"] else loc  # the message names the trial
        message = f"{'.'.join(loc)}: {message}" if loc and loc[-1] not in message else message
    render.fail(message)


def _points(data: Path, settings: Settings) -> tuple[list[float], list[float]]:
    """The CSV file's points, within the service's dataset limit (a local run's too)."""
    x, y = parse_points(data.read_text())
    if len(x) > settings.max_points:
        raise ValueError(f"{data}: {len(x)} points is over the limit of {settings.max_points}")
    return x, y


def _hyperparameters(given: dict[str, Any]) -> dict[str, Any]:
    """The train flags given, as the service reads a job's hyperparameters: the defaults for the
    rest (batch_size None: with_batch_size resolves it for the dataset)."""
    return schemas.Hyperparameters.model_validate(given).model_dump()


@with_train_flags
def train(
    ctx: typer.Context,
    data: Data,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the Result object, as JSON.")] = False,
    **flags: Any,
) -> None:
    """Train locally, with no server, and print the seven parameters and the final loss."""
    try:
        settings = get_settings()
        x, y = _points(data, settings)
        hp = with_batch_size(_hyperparameters(given_hyperparameters(ctx, flags)), len(x))
        check_runs([hp], len(x), settings, sweep=False)  # the service's limits: epochs, work
        with render.bar(total=hp["epochs"], quiet=as_json) as progress:

            def on_epoch(epoch: int, loss: float) -> None:
                render.advance(progress, epoch, loss=f"{loss:.6g}")

            result = model.train(x, y, config_from(hp), on_epoch=on_epoch)
    except BAD_INPUT as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
        return
    render.parameters(result.parameters)
    render.final_loss(result.final_loss, result.epochs_completed, result.device)
    if result.diverged:
        typer.echo("the loss became non-finite: these are the last finite parameters", err=True)
        raise typer.Exit(1)


def sweep(data: Path, asked: SweepAsk, *, top: int, as_json: bool) -> None:
    """`tinytrain sweep DATA.csv` with no server: every trial trained in this process by the fleet
    engine, then the best top as a table (--json: every trial with its result, and the best)."""
    try:
        settings = get_settings()
        x, y = _points(data, settings)
        base = _hyperparameters(asked.hyperparameters)
        request = schemas.SweepIn.model_validate(
            {**dataclasses.asdict(asked), "hyperparameters": base, "dataset": {"x": x, "y": y}}
        )
        goal = request.objective or default_objective(base)
        halving = request.halving.model_dump() if request.halving is not None else None
        if request.search is not None:
            spec = request.search.model_dump()
            check_search(spec, halving, base, len(x), settings)  # the service's limits: epochs, work
            hps, results = _searched(x, y, spec, halving, base, goal, quiet=as_json)
            columns = [key.removesuffix("_values") for key in search.ranges(spec)]
        else:
            draws = request.random.model_dump() if request.random is not None else None
            varied = sweep_trials(request.grid, draws, settings)  # counted before they are made
            hps = [with_batch_size({**base, **v}, len(x)) for v in varied]
            check_runs(hps, len(x), settings, sweep=True)  # the service's limits: epochs, work
            columns = list(varied[0]) if varied else []
            # As the service trains them: a halving sweep bracket by bracket, each ranked on its own.
            parts: list[tuple[Halving | None, int, int]] = [(None, 0, len(hps))]
            total = sum(hp["epochs"] for hp in hps)
            if halving is not None:
                total = halving_chunks(halving, goal, varied, base["epochs"], settings)[1]
                parts = [(halving_of(halving, goal, b), lo, hi) for b, lo, hi in brackets(halving, len(hps))]
            configs = [config_from(hp) for hp in hps]
            results = []
            with render.bar(f"{len(hps)} trials", total, quiet=as_json) as progress:
                finished = 0  # the epochs of the parts trained before this one

                def on_progress(fleet: Fleet) -> None:
                    render.advance(progress, finished + int(fleet.epochs_completed().sum()))

                for bracket, lo, hi in parts:
                    trained = model.train_fleet(x, y, configs[lo:hi], on_progress=on_progress, halving=bracket)
                    finished += sum(r.epochs_completed for r in trained)
                    results += trained
    except BAD_INPUT as exc:
        _fail(exc)
    trials = [_trial(k, hps, result, goal, halving, request.search) for k, result in enumerate(results)]
    ranked = sorted((t for t in trials if t.objective is not None), key=lambda t: (t.objective, t.index))
    if as_json:
        render.echo_json({"trials": trials, "best": ranked[0] if ranked else None})
        return
    unranked = [t for t in trials if t.objective is None]
    render.leaderboard(columns, goal, (ranked + unranked)[:top], rungs=halving is not None)


def _searched(
    x: Any,
    y: Any,
    spec: dict[str, Any],
    halving: dict[str, Any] | None,
    base: dict[str, Any],
    goal: str,
    *,
    quiet: bool,
) -> tuple[list[dict[str, Any]], list[model.TrainResult]]:
    """A search's trials and results, batch by batch as the service asks them (jobs/search.py),
    each batch with halving in its bracket."""
    hps: list[dict[str, Any]] = []
    results: list[model.TrainResult] = []
    told: list[search.Told] = []
    planned = search.planned_epochs(spec, halving, goal, base["epochs"])
    with render.bar(f"{spec['trials']} trials", planned, quiet=quiet) as progress:
        for lo, _ in search.batches(spec):
            asked = [with_batch_size({**base, **v}, len(x)) for v in search.ask(spec, told)]
            before = sum(r.epochs_completed for r in results)
            bracket = halving_of(halving, goal, search.bracket(spec, halving, lo)) if halving is not None else None

            def on_progress(fleet: Fleet, before: int = before) -> None:
                render.advance(progress, before + int(fleet.epochs_completed().sum()))

            configs = [config_from(hp) for hp in asked]
            trained = model.train_fleet(x, y, configs, on_progress=on_progress, halving=bracket)
            told += [
                search.told({"hyperparameters": hp, **trial_outcome(r, goal)})
                for hp, r in zip(asked, trained, strict=True)
            ]
            hps, results = hps + asked, results + trained
    return hps, results


def _trial(
    index: int,
    hps: list[dict[str, Any]],
    result: model.TrainResult,
    objective: str,
    halving: dict[str, Any] | None,
    searched: schemas.Search | None,
) -> schemas.TrialWithResult:
    """Trial index of the sweep of hps, as the service reads it back (api/routes/sweeps.py)."""
    hp, outcome = hps[index], trial_outcome(result, objective)
    bracket = rung = None
    if halving is not None:
        if searched is not None:
            bracket = search.bracket(searched.model_dump(), halving, index)
        else:
            bracket = bracket_of(halving, len(hps), index)
        rung = rung_reached(halving, objective, bracket, hp["epochs"], result.epochs_completed)
    return schemas.TrialWithResult(
        index=index,
        hyperparameters=hp,
        status=outcome["status"],
        error=schemas.Error.of(outcome["error_code"], outcome["error_message"]),
        objective=outcome["objective"],
        epochs_completed=result.epochs_completed,
        bracket=bracket,
        rung=rung,
        result=schemas.Result(
            **outcome["result"],
            loss_history=result.loss_history,
            validation_loss_history=result.validation_loss_history,
        ),
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    processes: Annotated[int, typer.Option(help="HTTP processes (each with its own executor); one per core.")] = 1,
    first_key: Annotated[
        bool,
        typer.Option(
            help="With no key in the database, make one for owner 'default' and print it. Off where "
            "stdout is kept (docker compose logs): make keys with `tinytrain keys create` instead."
        ),
    ] = True,
) -> None:
    """Run the HTTP API with its executor (TINYTRAIN_EXECUTOR); migrates the database first."""
    _migrated()
    with session_scope() as session:
        if first_key and not keys.any_key(session=session):
            key = keys.create(session=session, owner="default")
            typer.echo(f"No API key existed, so one was made for owner 'default' (it is shown only now):\n{key}")
    made = _metrics_dir()
    try:
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=processes, log_level="info")
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _metrics_dir() -> str | None:
    """Set PROMETHEUS_MULTIPROC_DIR for serve's processes (HTTP and local pool inherit it), so
    that their counters add up (worker/metrics.py): the operator's, else a fresh directory,
    returned to be removed when serve ends. Before anything imports prometheus_client."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        return None
    # Fresh: files left by an earlier serve would add its counts to this one's.
    made = tempfile.mkdtemp(prefix="tinytrain-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def worker(
    queues: Annotated[str | None, typer.Option(help="Default: gpu,train with a GPU, else cpu,train.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Training threads: one per core (CPU), one per GPU.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's metrics for Prometheus on this port (compose: 9100); off by default."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="The address --metrics-port listens on.")] = "127.0.0.1",
) -> None:
    """Run a Celery worker for this machine: warm the engine, then take jobs from Redis."""
    # One process (its pool is threads): its counters stay in its memory, not in files that a
    # serve given the same directory would sum as its own.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Imported only now, and only here: prometheus_client (which these import) reads
    # PROMETHEUS_MULTIPROC_DIR once, on import, and serve sets it before its processes import it.
    from worker.celery_worker import worker_app
    from worker.metrics import serve_metrics

    if metrics_port is not None:
        token = get_settings().metrics_token
        serve_metrics(metrics_host, metrics_port, token.get_secret_value() if token else None)

    gpu = cuda_available()
    model.warm_up()  # compiled before any job arrives; the pool's threads share it
    args = [
        "worker",
        "--queues",
        queues or ("gpu,train" if gpu else "cpu,train"),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"tinytrain-{os.getpid()}@%h",
    ]
    # Threads, never forked processes: a fork after CUDA is initialised breaks CUDA, and the
    # compiled training loop releases the GIL, so CPU jobs still train side by side.
    threads = 1 if gpu else concurrency or os.cpu_count() or 1  # one per GPU
    args += ["--pool", "threads", "--concurrency", str(threads)]
    worker_app(get_settings()).worker_main(args)


@keys_app.command("create")
def keys_create(owner: Annotated[str, typer.Option(help="Who the key's datasets and jobs belong to.")]) -> None:
    """Make a key for OWNER and print it alone on stdout (only its hash is stored)."""
    _migrated()
    with session_scope() as session:
        typer.echo(keys.create(session=session, owner=owner))


@keys_app.command("list")
def keys_list() -> None:
    """Every key's prefix, owner, creation time and revocation time (never the key)."""
    _migrated()
    with session_scope() as session:
        for k in keys.list_keys(session=session):
            revoked = f"revoked {k.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if k.revoked_at else "active"
            typer.echo(f"{k.prefix}  {k.owner}  created {k.created_at:%Y-%m-%dT%H:%M:%SZ}  {revoked}")


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix as `keys list` shows it.")]) -> None:
    """Revoke a key: requests with it are 401 from now on."""
    _migrated()
    with session_scope() as session:
        count = keys.revoke(session=session, prefix=prefix)
    if count == 0:
        typer.echo(f"error: no active key starts with {prefix}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {count} key(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (serve does this itself on start)."""
    settings = _migrated()
    typer.echo(f"database at the newest schema: {settings.database_url.split('@')[-1]}")


def _migrated() -> Settings:
    settings = get_settings()
    migrate.upgrade(settings.database_url)
    return settings
