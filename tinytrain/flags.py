"""The `tinytrain` command's flags: their declarations, and what they say as hyperparameters and
a sweep's draws. Shared by the local commands and the remote ones, so it needs no service package."""

import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic
import typer

from tinytrain.wire import Device, Dtype, Halving, Hyperparameters, Status

Command = TypeVar("Command", bound=Callable[..., None])
DEFAULT = Hyperparameters()
# The sources of a parameter's value that mean the user gave it.
GIVEN = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")

Data = Annotated[Path, typer.Argument(help="CSV file: two numeric columns x,y, optional header row.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
Top = Annotated[int, typer.Option(help="Rows of the leaderboard.")]

# A sweep's draws.
Grid = Annotated[list[str] | None, typer.Option(help="NAME=V1,V2,...: values to try (repeatable).")]
RandomTrials = Annotated[int | None, typer.Option(help="Draw this many trials at random instead of a grid.")]
RandomSeed = Annotated[int, typer.Option(help="The seed of the random draws (of --search: its sampler's).")]
Ranges = Annotated[
    list[str] | None, typer.Option("--range", help="NAME=MIN:MAX[:log]: a random draw's range (repeatable).")
]
SearchSampler = Annotated[
    str | None, typer.Option("--search", help="tpe: ask --trials of Optuna's TPE, --batch at a time, in the --range's.")
]
SearchTrials = Annotated[int | None, typer.Option("--trials", help="With --search: the trials in all.")]
SearchBatch = Annotated[
    int | None, typer.Option("--batch", help="With --search: the trials asked and trained at once.")
]
Objective = Annotated[str | None, typer.Option(help="final_loss or final_validation_loss.")]
HalvingOption = Annotated[
    str | None,
    typer.Option(
        "--halving",
        help="MIN:FACTOR[:BRACKETS]: successive halving from MIN epochs, keeping 1/FACTOR at each rung; "
        "Hyperband with BRACKETS > 1.",
        show_default=False,
    ),
]

# The remote commands'.
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="TINYTRAIN_URL", help="The service's URL, http://HOST:PORT.", show_default=False),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="TINYTRAIN_API_KEY", help="An API key of the service.", show_default=False),
]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow it to its end (a progress bar on a terminal).")]
Id = Annotated[str, typer.Argument(help="The id, as `list` shows it.", show_default=False)]
StatusFilter = Annotated[Status | None, typer.Option("--status", help="Only those in this status.")]
Limit = Annotated[int, typer.Option(min=1, max=100, help="At most this many (one page).")]
CursorOption = Annotated[str | None, typer.Option(help="The next page: the cursor the previous one printed.")]
Start = Annotated[int | None, typer.Option(min=0, help="The first epoch of a slice of the histories, from 0.")]
Stop = Annotated[int | None, typer.Option(min=1, help="The epoch after the slice's last.")]
MaxPoints = Annotated[int | None, typer.Option(min=2, help="At most this many history entries, evenly spaced.")]
OrderBy = Annotated[Literal["objective", "index"], typer.Option(help="objective: best first.")]


def _train_flags(
    learning_rate: float = DEFAULT.learning_rate,
    batch_size: Annotated[
        int | None, typer.Option(help=Hyperparameters.model_fields["batch_size"].description)
    ] = DEFAULT.batch_size,
    epochs: int = DEFAULT.epochs,
    seed: int = DEFAULT.seed,
    no_shuffle: Annotated[bool, typer.Option("--no-shuffle", help="Keep the stored order.")] = not DEFAULT.shuffle,
    drop_last: Annotated[
        bool, typer.Option("--drop-last", help="Skip each epoch's last, smaller batch.")
    ] = DEFAULT.drop_last,
    validation_fraction: float = DEFAULT.validation_fraction,
    dtype: Annotated[Dtype, typer.Option(help="Floating-point type of the computation.")] = DEFAULT.dtype,
    device: Annotated[
        Device, typer.Option(help="auto: the GPU where there is one and the work is big enough.")
    ] = DEFAULT.device,
    init: Annotated[str | None, typer.Option(help="The seven initial parameters as a JSON object.")] = None,
) -> None:
    """The flags of one training: train's and submit's, and the base of a sweep's trials."""


def with_train_flags(command: Command) -> Command:
    """command with the train flags as keyword options too, arriving in its **flags (typer reads
    the signature): the flags are listed once, above."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(_train_flags).parameters.values()]
    command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    return command


def given_hyperparameters(ctx: typer.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """The train flags given on the command line, as hyperparameters: those left out are left to
    the defaults (the service's, which may depend on the dataset, as batch_size does). ValueError
    for an --init that is not a JSON object."""
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
                hp["initial_parameters"] = None
            if not isinstance(hp["initial_parameters"], dict):
                raise ValueError(f"--init must be a JSON object of the seven parameters, not {value!r}")
        else:
            hp[name] = value
    return hp


@dataclass(frozen=True)
class SweepAsk:
    """What a sweep's flags ask for: the base hyperparameters given, a grid or random draws (the
    other None), and the objective."""

    hyperparameters: dict[str, Any]
    grid: dict[str, list[Any]] | None
    random: dict[str, Any] | None
    objective: str | None
    halving: dict[str, int] | None = None
    search: dict[str, Any] | None = None  # --search: instead of a grid or random draws


def sweep_ask(
    ctx: typer.Context,
    flags: dict[str, Any],
    grid: list[str] | None,
    random: int | None,
    random_seed: int,
    ranges: list[str] | None,
    objective: str | None,
    halving: str | None = None,
) -> SweepAsk:
    """The sweep of the train flags given as the base, and --grid NAME=V1,V2,..., or --random N
    with --random-seed and --range NAME=MIN:MAX[:log]; --halving MIN:FACTOR[:BRACKETS]. ValueError
    for a flag that does not parse."""
    hp = given_hyperparameters(ctx, flags)
    halved = _halving(halving) if halving is not None else None
    if random is None:
        return SweepAsk(hp, _named(grid or [], _grid_values, "--grid"), None, objective, halved)
    draws = {"trials": random, "seed": random_seed, **_named(ranges or [], _range, "--range")}
    return SweepAsk(hp, None, draws, objective, halved)


def _halving(text: str) -> dict[str, int]:
    """MIN:FACTOR[:BRACKETS] as a sweep's halving, checked as the service checks it."""
    parts = text.split(":")
    usage = f"--halving takes MIN:FACTOR[:BRACKETS], whole numbers, not {text!r}"
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(usage)
    names = ("min_epochs", "reduction_factor", "brackets")
    try:
        checked = Halving.model_validate(dict(zip(names, map(int, parts), strict=False)))
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg'].removeprefix('Input ')}" for e in exc.errors())
        raise ValueError(f"--halving {text}: {problems}") from None
    return checked.model_dump()


def with_search(
    asked: SweepAsk, sampler: str | None, trials: int | None, batch: int | None, seed: int, ranges: list[str] | None
) -> SweepAsk:
    """asked as --search SAMPLER --trials N [--batch K] ask it, of the --range's, seeded by
    --random-seed. ValueError for --trials or --batch without --search, or --search with a grid
    or random draws."""
    if sampler is None:
        if trials is not None or batch is not None:
            raise ValueError("--trials and --batch are for --search")
        return asked
    if trials is None or asked.grid or asked.random is not None:
        raise ValueError("--search takes --trials N and its --range's, without --grid or --random")
    spec = {"sampler": sampler, "trials": trials, "seed": seed, **_named(ranges or [], _range, "--range")}
    return dataclasses.replace(asked, grid=None, search={**spec, **({"batch": batch} if batch is not None else {})})


def _named(pairs: list[str], parse: Callable[[str, str], Any], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{flag} takes NAME=VALUE, not {pair!r}")
        name = name.strip().replace("-", "_")
        out[name] = parse(name, value)
    return out


def _grid_values(name: str, text: str) -> list[Any]:
    """NAME's values from V1,V2,... as JSON values (a word that is no JSON stays a string, for the
    validation to name); JSON objects separated by ';' for the object-valued names."""

    def value(v: str) -> Any:
        try:
            return json.loads(v)
        except ValueError:
            return v

    return [value(v) for v in text.split(";" if name in ("initial_parameters", "early_stopping") else ",")]


def _range(name: str, text: str) -> dict[str, Any]:
    """MIN:MAX[:log] as a Random range."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ValueError(f"{name}: a range is MIN:MAX or MIN:MAX:log, not {text!r}")
    return {"min": float(parts[0]), "max": float(parts[1]), "log": len(parts) == 3}
