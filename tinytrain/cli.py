"""The `tinytrain` console script: the commands of tinytrain/remote.py, which talk to a server
and need only the client's packages, and those of tinytrain/local.py, which run the service's
code (train, sweep with no server, serve, worker, keys, db) and need its packages.

Where the service's packages are not installed (the client alone: pip install tinytrain), each
local command says in one line what to install, and exits 2.
"""

from typing import Annotated, Any, NoReturn

import typer

from tinytrain import remote, render
from tinytrain.flags import (
    Data,
    Grid,
    HalvingOption,
    KeyOption,
    Objective,
    RandomSeed,
    RandomTrials,
    Ranges,
    SearchBatch,
    SearchSampler,
    SearchTrials,
    ServerOption,
    Top,
    sweep_ask,
    with_search,
    with_train_flags,
)

INSTALL = "pip install 'tinytrain[server]'"

MISSING: str | None = None  # the first of the service's modules found missing
try:
    from tinytrain import local
except ModuleNotFoundError as exc:  # the client alone: no numba, torch, fastapi, ...
    MISSING = exc.name

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tinytrain: training as a service.")


@app.callback()
def main() -> None:
    """Training as a service for a 1-2-1 network: train, sweep, serve, worker, keys, db; and the
    client of a server: submit, jobs, sweep --server, sweeps, datasets."""


def _needs_server(command: str | None) -> NoReturn:
    render.fail(f"tinytrain {command} needs the service's packages ({MISSING} is not installed): {INSTALL}")


def _stand_in(ctx: typer.Context) -> None:
    """A local command where the service's packages are not installed."""
    _needs_server(ctx.info_name)


@app.command()
@with_train_flags
def sweep(
    ctx: typer.Context,
    data: Data,
    grid: Grid = None,
    random: RandomTrials = None,
    random_seed: RandomSeed = 0,
    range_: Ranges = None,
    search: SearchSampler = None,
    trials: SearchTrials = None,
    batch: SearchBatch = None,
    objective: Objective = None,
    halving: HalvingOption = None,
    top: Top = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the trials and the best, as JSON.")] = False,
    server: ServerOption = None,
    key: KeyOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --server: follow it, then print the leaderboard.")] = False,
    **flags: Any,
) -> None:
    """Train many trials of one dataset locally with the fleet engine: a grid, random draws or
    a search, the train flags as the base; then the best trials as a table. With --server (or
    TINYTRAIN_URL), the service runs the sweep instead."""
    try:
        asked = sweep_ask(ctx, flags, grid, random, random_seed, range_, objective, halving)
        asked = with_search(asked, search, trials, batch, random_seed, range_)
    except ValueError as exc:
        render.fail(str(exc))
    if server:
        remote.sweep_on_server(data, asked, server=server, key=key, top=top, wait=wait, as_json=as_json)
    elif MISSING is not None:
        _needs_server("sweep")
    else:
        local.sweep(data, asked, top=top, as_json=as_json)


app.command()(with_train_flags(remote.submit))
app.add_typer(remote.jobs_app, name="jobs")
app.add_typer(remote.sweeps_app, name="sweeps")
app.add_typer(remote.datasets_app, name="datasets")
app.add_typer(remote.webhooks_app, name="webhooks")

if MISSING is None:
    app.command()(local.train)
    app.command()(local.serve)
    app.command()(local.worker)
    app.add_typer(local.keys_app, name="keys")
    app.add_typer(local.db_app, name="db")
else:
    for name in ("train", "serve", "worker", "keys", "db"):
        settings = {"allow_extra_args": True, "ignore_unknown_options": True}
        app.command(name, help=f"Needs the service's packages: {INSTALL}", context_settings=settings)(_stand_in)
