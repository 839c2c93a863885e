"""The `tinytrain` console script: one command per process kind (serve, worker), local training, keys, db."""

import dataclasses
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from tqdm import tqdm

import model
from api import schemas
from jobs import keys, migrate
from jobs.admission import check_runs, sweep_trials, with_batch_size
from jobs.db import session_scope
from jobs.errors import InvalidInput
from jobs.hyperparameters import config_from, default_objective
from jobs.results import trial_outcome
from jobs.settings import Settings, get_settings
from model.config import Device, Dtype
from model.csvdata import parse_points
from model.fleet import Fleet
from tinytrain import remote

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tinytrain: training as a service.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
db_app = typer.Typer(no_args_is_help=True, help="The job database.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


@app.callback()
def main() -> None:
    """Training as a service for a 1-2-1 network: serve, worker, train, keys, db."""


DEFAULT = model.TrainConfig()
Command = TypeVar("Command", bound=Callable[..., None])
Data = Annotated[Path, typer.Argument(help="CSV file: two numeric columns x,y, optional header row.")]
NoShuffle = Annotated[bool, typer.Option("--no-shuffle", help="Keep the stored order.")]
DropLast = Annotated[bool, typer.Option("--drop-last", help="Skip each epoch's last, smaller batch.")]
DtypeOption = Annotated[Dtype, typer.Option(help="Floating-point type of the computation.")]
DeviceOption = Annotated[Device, typer.Option(help="auto: the GPU where there is one and the work is big enough.")]
Init = Annotated[str | None, typer.Option(help="The seven initial parameters as a JSON object.")]
BatchSize = Annotated[
    int | None,
    typer.Option(help=f"Points per mini-batch; not given: all the training points, at most {DEFAULT.batch_size}."),
]


def _hyperparameters(**flags: Any) -> dict[str, Any]:
    """The hyperparameters of the train flags, as the service reads a job's (batch_size None
    when not given: with_batch_size resolves it for the dataset)."""
    init = flags.pop("init")
    flags["shuffle"] = not flags.pop("no_shuffle")
    initial = json.loads(init) if init is not None else None
    if initial is not None and not isinstance(initial, dict):
        raise model.TrainingInputError("--init must be a JSON object of the seven parameters")
    return schemas.Hyperparameters.model_validate({**flags, "initial_parameters": initial}).model_dump()


def _fail(exc: Exception) -> NoReturn:
    message = str(exc)
    if isinstance(exc, ValidationError):
        parts = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        message = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in parts)
    elif isinstance(exc, InvalidInput):  # admission's, named as the schema's errors are
        loc = [str(p) for p in exc.loc if p not in ("body", "hyperparameters")]
        loc = loc[2:] if loc[:1] == ["trials"] else loc  # the message names the trial
        message = f"{'.'.join(loc)}: {message}" if loc and loc[-1] not in message else message
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2) from exc


def _train_flags(
    learning_rate: float = DEFAULT.learning_rate,
    batch_size: BatchSize = None,
    epochs: int = DEFAULT.epochs,
    seed: int = DEFAULT.seed,
    no_shuffle: NoShuffle = not DEFAULT.shuffle,
    drop_last: DropLast = DEFAULT.drop_last,
    validation_fraction: float = DEFAULT.validation_fraction,
    dtype: DtypeOption = DEFAULT.dtype,
    device: DeviceOption = DEFAULT.device,
    init: Init = None,
) -> None:
    """The flags of one training: train's, and the base of a sweep's trials."""


def with_train_flags(command: Command) -> Command:
    """command with the train flags as keyword options too, arriving in its **flags (typer reads
    the signature): the flags are listed once, above."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(_train_flags).parameters.values()]
    command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    return command


BAD_INPUT = (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, InvalidInput)  # ValueError: also pydantic's


def _check_points(data: Path, n_points: int, settings: Settings) -> None:
    """The service's dataset limit, for a local run too."""
    if n_points > settings.max_points:
        raise ValueError(f"{data}: {n_points} points is over the limit of {settings.max_points}")


@app.command()
@with_train_flags
def train(
    data: Data,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the Result object, as JSON.")] = False,
    **flags: Any,
) -> None:
    """Train locally, with no server, and print the seven parameters and the final loss."""
    try:
        settings = get_settings()
        x, y = parse_points(data.read_text())
        _check_points(data, len(x), settings)
        hp = with_batch_size(_hyperparameters(**flags), len(x))
        check_runs([hp], len(x), settings, sweep=False)  # the service's limits: epochs, work
        with tqdm(total=hp["epochs"], unit="epoch", disable=as_json or not sys.stderr.isatty()) as bar:

            def on_epoch(epoch: int, loss: float) -> None:
                bar.update(epoch - bar.n)
                bar.set_postfix(loss=f"{loss:.6g}", refresh=False)

            result = model.train(x, y, config_from(hp), on_epoch=on_epoch)
    except BAD_INPUT as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
        return
    for name, value in result.parameters.items():
        typer.echo(f"{name:>4} = {value:.10g}")
    final = f"{result.final_loss:.10g}" if result.final_loss is not None else "not finite"
    typer.echo(f"final loss = {final} after {result.epochs_completed} epochs ({result.device})")
    if result.diverged:
        typer.echo("the loss became non-finite: these are the last finite parameters", err=True)
        raise typer.Exit(1)


def _grid_values(name: str, text: str) -> list[Any]:
    """NAME's values from V1,V2,... as JSON values (a word that is no JSON stays a string, for the
    validation to name); JSON objects separated by ';' for the object-valued names."""

    def value(v: str) -> Any:
        try:
            return json.loads(v)
        except ValueError:
            return v

    return [value(v) for v in text.split(";" if name in ("initial_parameters", "early_stopping") else ",")]


def _range(text: str) -> dict[str, Any]:
    """MIN:MAX[:log] as a Random range."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ValueError(f"a range is MIN:MAX or MIN:MAX:log, not {text!r}")
    return {"min": float(parts[0]), "max": float(parts[1]), "log": len(parts) == 3}


def _named(pairs: list[str], parse: Any, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{flag} takes NAME=VALUE, not {pair!r}")
        out[name.strip().replace("-", "_")] = parse(name, value) if parse is _grid_values else parse(value)
    return out


@app.command()
@with_train_flags
def sweep(
    ctx: typer.Context,
    data: Data,
    grid: Annotated[list[str] | None, typer.Option(help="NAME=V1,V2,...: values to try (repeatable).")] = None,
    random: Annotated[int | None, typer.Option(help="Draw this many trials at random instead of a grid.")] = None,
    random_seed: Annotated[int, typer.Option(help="The seed of the random draws.")] = 0,
    range_: Annotated[
        list[str] | None, typer.Option("--range", help="NAME=MIN:MAX[:log]: a random draw's range (repeatable).")
    ] = None,
    objective: Annotated[str | None, typer.Option(help="final_loss or final_validation_loss.")] = None,
    top: Annotated[int, typer.Option(help="Rows of the leaderboard.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the trials and the best, as JSON.")] = False,
    server: remote.ServerOption = None,
    key: remote.KeyOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --server: follow it, then print the leaderboard.")] = False,
    **flags: Any,
) -> None:
    """Train many trials of one dataset locally with the fleet engine: a grid or random draws,
    the train flags as the base; then the best trials as a table. With --server (or
    TINYTRAIN_URL), the service runs the sweep instead."""
    if server:
        asked = remote.Draws(grid, random, random_seed, range_, objective)
        remote.sweep_on_server(
            ctx, data, asked, server=server, key=key, top=top, wait=wait, as_json=as_json, flags=flags
        )
        return
    try:
        settings = get_settings()
        x, y = parse_points(data.read_text())
        _check_points(data, len(x), settings)
        base = _hyperparameters(**flags)
        request = schemas.SweepIn.model_validate(
            {
                "dataset": {"x": x, "y": y},
                "hyperparameters": base,
                "grid": _named(grid or [], _grid_values, "--grid") if random is None else None,
                "random": {"trials": random, "seed": random_seed, **_named(range_ or [], _range, "--range")}
                if random is not None
                else None,
                "objective": objective,
            }
        )
        draws = request.random.model_dump() if request.random is not None else None
        varied = sweep_trials(request.grid, draws, settings)  # counted before they are made
        hps = [with_batch_size({**base, **v}, len(x)) for v in varied]
        check_runs(hps, len(x), settings, sweep=True)  # the service's limits: epochs, work
        goal = request.objective or default_objective(base)
        total = sum(hp["epochs"] for hp in hps)
        with tqdm(
            total=total, desc=f"{len(hps)} trials", unit="epoch", disable=as_json or not sys.stderr.isatty()
        ) as bar:

            def on_progress(fleet: Fleet) -> None:
                bar.update(int(fleet.epochs_completed().sum()) - bar.n)

            results = model.train_fleet(x, y, [config_from(hp) for hp in hps], on_progress=on_progress)
    except BAD_INPUT as exc:
        _fail(exc)
    outcomes = [_trial(k, hp, result, goal) for k, (hp, result) in enumerate(zip(hps, results, strict=True))]
    ranked = sorted((t for t in outcomes if t.objective is not None), key=lambda t: (t.objective, t.index))
    best = ranked[0] if ranked else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "trials": [t.model_dump(mode="json") for t in outcomes],
                    "best": best.model_dump(mode="json") if best else None,
                }
            )
        )
        return
    names = list(varied[0]) if varied else []
    typer.echo(f"{'index':>5}  " + "  ".join(f"{n:>14}" for n in names) + f"  {goal:>22}  {'status':>9}")
    for t in ranked[:top] + [t for t in outcomes if t.objective is None][: max(0, top - len(ranked))]:
        values = "  ".join(f"{json.dumps(t.hyperparameters[n]):>14}" for n in names)
        score = f"{t.objective:.10g}" if t.objective is not None else "-"
        typer.echo(f"{t.index:>5}  {values}  {score:>22}  {t.status:>9}")


def _trial(index: int, hp: dict[str, Any], result: model.TrainResult, objective: str) -> schemas.TrialWithResult:
    outcome = trial_outcome(result, objective)
    return schemas.TrialWithResult(
        index=index,
        hyperparameters=hp,
        status=outcome["status"],
        error=schemas.Error.of(outcome["error_code"], outcome["error_message"]),
        objective=outcome["objective"],
        epochs_completed=result.epochs_completed,
        result=schemas.Result(
            **outcome["result"],
            loss_history=result.loss_history,
            validation_loss_history=result.validation_loss_history,
        ),
    )


@app.command()
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
    import uvicorn

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


@app.command()
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
    from model.training import cuda_available
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


# The commands that talk to a server (tinytrain/remote.py).
app.command()(with_train_flags(remote.submit))
app.add_typer(remote.jobs_app, name="jobs")
app.add_typer(remote.sweeps_app, name="sweeps")
app.add_typer(remote.datasets_app, name="datasets")
