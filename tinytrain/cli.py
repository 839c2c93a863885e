"""The `tinytrain` console script: one command per process kind (architecture.md)."""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

import model
from jobs import keys, migrate
from jobs.db import session_scope
from jobs.settings import Settings, get_settings
from model.config import Device, Dtype
from model.csvdata import parse_points

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tinytrain: training as a service.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
db_app = typer.Typer(no_args_is_help=True, help="The job database.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


@app.callback()
def main() -> None:
    """Training as a service for a 1-2-1 network: serve, worker, train, keys, db."""


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="CSV file: two numeric columns x,y, optional header row.")],
    learning_rate: float = 0.1,
    batch_size: int = 32,
    epochs: int = 100,
    seed: int = 0,
    no_shuffle: Annotated[bool, typer.Option("--no-shuffle", help="Keep the stored order.")] = False,
    drop_last: Annotated[bool, typer.Option("--drop-last", help="Skip each epoch's last, smaller batch.")] = False,
    validation_fraction: float = 0.0,
    dtype: Annotated[Dtype, typer.Option(help="Floating-point type of the computation.")] = "float32",
    device: Annotated[Device, typer.Option(help="auto: cuda where available.")] = "auto",
    init: Annotated[str | None, typer.Option(help="The seven initial parameters as a JSON object.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the Result object, as JSON.")] = False,
) -> None:
    """Train locally, with no server, and print the seven parameters and the final loss."""
    try:
        x, y = parse_points(data.read_text())
        initial = json.loads(init) if init is not None else None
        if initial is not None and not isinstance(initial, dict):
            raise model.TrainingInputError("--init must be a JSON object of the seven parameters")
        config = model.TrainConfig(
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            shuffle=not no_shuffle,
            drop_last=drop_last,
            validation_fraction=validation_fraction,
            initial_parameters=initial,
            dtype=dtype,
            device=device,
        )
        with tqdm(total=epochs, unit="epoch", disable=as_json or not sys.stderr.isatty()) as bar:

            def on_epoch(epoch: int, loss: float) -> None:
                bar.update(epoch - bar.n)
                bar.set_postfix(loss=f"{loss:.6g}", refresh=False)

            result = model.train(x, y, config, on_epoch=on_epoch)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, model.TrainingInputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
        return
    for name, value in result.parameters.items():
        typer.echo(f"{name:>4} = {value:.10g}")
    typer.echo(f"final loss = {result.final_loss:.10g} after {result.epochs_completed} epochs ({result.device})")
    if result.diverged:
        typer.echo("the loss became non-finite: these are the last finite parameters", err=True)
        raise typer.Exit(1)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    processes: Annotated[int, typer.Option(help="HTTP processes (each with its own executor); one per core.")] = 1,
) -> None:
    """Run the HTTP API with its executor (TINYTRAIN_EXECUTOR); migrates the database first."""
    import uvicorn

    _migrated()
    with session_scope() as session:
        if not keys.any_key(session=session):
            key = keys.create(session=session, owner="default")
            typer.echo(f"No API key existed, so one was made for owner 'default' (it is shown only now):\n{key}")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=processes, log_level="info")


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Default: gpu,train with a GPU, else cpu,train.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Training threads: one per core (CPU), one per GPU.")] = None,
) -> None:
    """Run a Celery worker for this machine: warm the engine, then take jobs from Redis."""
    import os

    from model.training import cuda_available
    from worker.celery_app import make_app

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
    make_app(get_settings()).worker_main(args)


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
