"""What the `tinytrain` commands print: one-line errors, JSON, tables, the leaderboard, progress bars.

Results on stdout; errors, messages and the progress bars on stderr, the bars only to a terminal.
"""

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from tqdm import tqdm

from tinytrain.wire import Dataset, Job, JobSummary, Page, Sweep, SweepSummary, TrialBase, Webhook, WebhookAttemptOut


def fail(message: str) -> NoReturn:
    """The one line of an error on stderr, and exit status 2."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


def echo_json(value: BaseModel | dict[str, Any] | None) -> None:
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


def number(value: float | None) -> str:
    return f"{value:.10g}" if value is not None else "-"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"


# Progress bars.


def bar_wanted() -> bool:
    # A bar redraws itself with carriage returns: in a log file or a pipe that is noise.
    return sys.stderr.isatty()


def bar(desc: str | None = None, total: int | None = None, quiet: bool = False) -> "tqdm[Any]":
    """A bar of epochs on stderr, drawn only to a terminal (and not when quiet)."""
    return tqdm(
        desc=desc, total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True, disable=quiet or not bar_wanted()
    )


def advance(progress: "tqdm[Any]", done: int, total: int | None = None, **postfix: str) -> None:
    """Move the bar to done epochs (of total, where given), showing postfix beside it."""
    if total is not None:
        progress.total = total
    progress.update(done - progress.n)
    if postfix:
        progress.set_postfix(postfix, refresh=False)


# A run.


def parameters(values: Mapping[str, float]) -> None:
    for name, value in values.items():
        typer.echo(f"{name:>4} = {value:.10g}")


def final_loss(loss: float | None, epochs: int, device: str | None = None) -> None:
    where = f" ({device})" if device is not None else ""
    typer.echo(f"final loss = {number(loss)} after {epochs} epochs{where}")


def run_header(run: Job | Sweep) -> None:
    """What `jobs show` and `sweeps show` both print first."""
    typer.echo(f"id: {run.id}" + (f"  ({run.name})" if run.name else ""))
    typer.echo(f"status: {run.status}" + (f"  {run.error.code}: {run.error.message}" if run.error else ""))
    typer.echo(f"dataset: {run.dataset_id}")
    typer.echo(f"hyperparameters: {json.dumps(run.hyperparameters)}")
    times = [("created", run.created_at), ("started", run.started_at), ("finished", run.finished_at)]
    typer.echo(f"times: {', '.join(f'{what} {_when(when)}' for what, when in times if when is not None)}")
    if run.device is not None:
        typer.echo(f"device: {run.device}, attempts: {run.attempts}")


def job(run: Job) -> None:
    run_header(run)
    typer.echo(f"progress: {run.progress.epochs_completed}/{run.progress.epochs} epochs")
    if run.result is not None:
        parameters(run.result.parameters.model_dump())
        final_loss(run.result.final_loss, run.result.epochs_completed)


def sweep(run: Sweep) -> None:
    run_header(run)
    typer.echo(f"{'grid' if run.grid is not None else 'random'}: {json.dumps(run.grid or run.random)}")
    counts = run.trials
    typer.echo(
        f"trials: {counts.total} ({counts.queued} queued, {counts.running} running, {counts.succeeded} succeeded, "
        f"{counts.failed} failed, {counts.cancelled} cancelled"
        + (f", {counts.pruned} pruned)" if run.halving is not None else ")")
    )
    if run.halving is not None:
        typer.echo(f"halving: {run.halving.model_dump_json()}")
    typer.echo(f"progress: {run.progress.epochs_completed}/{run.progress.epochs} epochs")
    if run.best is not None:
        best = run.best
        values = {n: best.hyperparameters.get(n) for n in varied(run)}
        typer.echo(f"best: trial {best.index}, {run.objective} = {best.objective:.10g}, {json.dumps(values)}")


def varied(run: Sweep) -> list[str]:
    """The hyperparameters a sweep varies: its grid's keys, or what its random draws or its search asks."""
    if run.grid is not None:
        return list(run.grid)
    drawn = run.random or run.search or {}
    return [k.removesuffix("_values") for k in drawn if k not in ("trials", "seed", "sampler", "batch")]


# Tables.


def jobs(items: Sequence[JobSummary]) -> None:
    typer.echo(f"{'id':<28}  {'status':<9}  {'epochs':>17}  {'last loss':>12}  {'created':<19}  name")
    for j in items:
        epochs = f"{j.progress.epochs_completed}/{j.progress.epochs}"
        loss = f"{j.progress.last_loss:.6g}" if j.progress.last_loss is not None else "-"
        typer.echo(f"{j.id:<28}  {j.status:<9}  {epochs:>17}  {loss:>12}  {_when(j.created_at):<19}  {j.name or ''}")


def sweeps(items: Sequence[SweepSummary]) -> None:
    typer.echo(f"{'id':<27}  {'status':<9}  {'objective':<21}  {'created':<19}  name")
    for s in items:
        typer.echo(f"{s.id:<27}  {s.status:<9}  {s.objective:<21}  {_when(s.created_at):<19}  {s.name or ''}")


def datasets(items: Sequence[Dataset]) -> None:
    typer.echo(f"{'id':<27}  {'points':>9}  {'created':<19}  name")
    for d in items:
        typer.echo(f"{d.id:<27}  {d.n_points:>9}  {_when(d.created_at)}  {d.name or ''}")


def webhooks(items: Sequence[Webhook]) -> None:
    typer.echo(f"{'id':<27}  {'enabled':<7}  {'url':<40}  events")
    for w in items:
        typer.echo(f"{w.id:<27}  {'yes' if w.enabled else 'no':<7}  {w.url:<40}  {','.join(w.events)}")
        if w.disabled_reason:
            typer.echo(f"  {w.disabled_reason}")


def attempts(items: Sequence[WebhookAttemptOut]) -> None:
    typer.echo(f"{'attempted':<19}  {'delivery':<28}  {'type':<16}  {'answer':<8}  {'seconds':>7}  error")
    for a in items:
        answer = str(a.http_status) if a.http_status is not None else "-"
        line = (
            f"{_when(a.attempted_at):<19}  {a.delivery_id:<28}  {a.type:<16}  {answer:<8}  {a.duration_seconds:>7.2f}"
        )
        typer.echo(f"{line}  {a.error or ''}")


def leaderboard(names: Sequence[str], objective: str, trials: Sequence[TrialBase], *, rungs: bool = False) -> None:
    """The trials in the order given, with the values of the varied hyperparameters (names); a
    halving sweep's (rungs) also with the last rung each reached and its epochs trained, which
    tell a pruned trial's stage (it has no objective: only succeeded trials rank)."""
    stage = f"  {'rung':>6}  {'epochs':>6}" if rungs else ""
    typer.echo(f"{'index':>5}  " + "  ".join(f"{n:>14}" for n in names) + f"  {objective:>22}{stage}  {'status':>9}")
    for t in trials:
        values = "  ".join(f"{json.dumps(t.hyperparameters.get(n)):>14}" for n in names)
        stage = f"  {t.rung if t.rung is not None else '-':>6}  {t.epochs_completed:>6}" if rungs else ""
        typer.echo(f"{t.index:>5}  {values}  {number(t.objective):>22}{stage}  {t.status:>9}")


def page(items: Page[Any], table: Callable[[list[Any]], None], as_json: bool) -> None:
    """A page as JSON, or its items as a table; where the list goes on, the flag that asks for
    the next page (on stderr)."""
    if as_json:
        echo_json(items)
        return
    table(items.items)
    if items.next_cursor is not None:
        typer.echo(f"more: --cursor {items.next_cursor}", err=True)
