"""GET /v1/jobs/{id}/plot.svg: a job's loss curves and its learned curve over the dataset, as one SVG
a person can paste into a report, drawn on the server with matplotlib. The drawn data are the
SVG's groups with ids loss, validation_loss, points and fit, for whoever edits or reads the file."""

import io
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Response

import model
from api.deps import JobDep, SessionDep
from api.errors import error
from jobs import datasets, results
from jobs.errors import Conflict
from jobs.status import ACTIVE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

router = APIRouter(prefix="/jobs", tags=["jobs"])

# Enough to draw a smooth curve at any size the figure is shown at, small enough for a report.
HISTORY_POINTS = 2000
DATASET_POINTS = 3000
CURVE_POINTS = 400
DRAWABLE = 1e300  # the largest magnitude drawn as it is (see _scale)
LOSSES = 1e150  # losses from 1 / LOSSES to LOSSES are drawn, on a log axis
# The dashboard's colours (Okabe and Ito's, told apart with the common kinds of colour blindness).
BLUE, VERMILLION, GREY = "#0072B2", "#D55E00", "#6b6b6b"

SVG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}, "description": "An SVG image."}
}


def _draw_losses(ax: "Axes", epochs: npt.NDArray[np.int64], loss: results.Floats, val: results.Floats | None) -> None:
    ax.set_title("Loss by epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (log scale)")
    if not loss.size:
        ax.text(0.5, 0.5, "no epoch completed", ha="center", va="center", transform=ax.transAxes)
        return
    # A loss of exactly 0 has no place on a log axis: masked rather than clipped to a made-up value.
    # So is one past LOSSES: the log axis's ticks, a stride of decades apart, would pass 1e308.
    ax.set_yscale("log", nonpositive="mask")
    ax.plot(epochs, _drawable(loss), color=BLUE, linewidth=1.5, label="training loss", gid="loss")
    if val is not None:
        dashed: dict[str, Any] = {"color": VERMILLION, "linewidth": 1.5, "linestyle": "--"}
        ax.plot(epochs, _drawable(val), **dashed, label="validation loss", gid="validation_loss")
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.legend(loc="upper right", frameon=False)


def _drawable(loss: results.Floats) -> results.Floats:
    return np.where((loss >= 1 / LOSSES) & (loss <= LOSSES), loss, np.nan)


def _draw_fit(ax: "Axes", points: datasets.Points | None, parameters: dict[str, float]) -> None:
    ax.set_title("Learned curve over the dataset")
    if points is None:
        ax.text(0.5, 0.5, "the dataset was deleted", ha="center", va="center", transform=ax.transAxes)
        return
    x, y = points
    grid = _curve_grid(float(x.min()), float(x.max()))
    fitted = np.array(model.predict(parameters, grid))
    x_scale, y_scale = _scale(x, "x", ax.set_xlabel), _scale(y, "y", ax.set_ylabel)
    ax.scatter(
        x * x_scale,
        y * y_scale,
        s=6,
        color=GREY,
        alpha=0.6,
        linewidths=0,
        label=f"data ({x.size:,} points)",
        gid="points",
    )
    with np.errstate(over="ignore", invalid="ignore"):
        fitted *= y_scale
    # An output that overflows (or leaves the drawable range) is a gap in the curve, not an axis
    # stretched to infinity.
    fitted[~(np.abs(fitted) <= DRAWABLE)] = np.nan
    ax.plot(grid * x_scale, fitted, color=VERMILLION, linewidth=2, label="network", gid="fit")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(loc="best", frameon=False)


def _scale(values: results.Floats, name: str, label: Callable[[str], object]) -> float:
    """The factor that brings values within DRAWABLE, labelling the axis with it: matplotlib's
    margins and ticks overflow on an axis from -1e308 to 1e308."""
    extent = float(np.abs(values).max(initial=0.0))
    if extent <= DRAWABLE:
        label(name)
        return 1.0
    exponent = math.floor(math.log10(extent))
    label(f"{name} (x 1e{exponent})")
    return float(10.0**-exponent)


def _curve_grid(lo: float, hi: float) -> npt.NDArray[np.float64]:
    """CURVE_POINTS finite x from a little below lo to a little above hi, for any finite lo <= hi:
    points at the ends of float64 (-1e308 and 1e308) overflow neither hi - lo nor the padding."""
    largest = float(np.finfo(np.float64).max)
    pad = (hi * 0.02 - lo * 0.02) or 1.0
    with np.errstate(over="ignore"):
        lo, hi = max(lo - pad, -largest), min(hi + pad, largest)
    t = np.linspace(0.0, 1.0, CURVE_POINTS)
    return lo * (1 - t) + hi * t


def _title(job_id: str, name: str | None, hp: dict[str, Any], result: dict[str, Any]) -> str:
    final = result.get("final_loss")
    loss = f", final loss {final:.3g}" if isinstance(final, float) and math.isfinite(final) else ""
    return (
        f"{name or job_id}: learning rate {hp['learning_rate']:g}, batch size {hp['batch_size']}, "
        f"{result['epochs_completed']:,} of {hp['epochs']:,} epochs{loss}"
    )


def render(
    title: str,
    history: tuple[npt.NDArray[np.int64], results.Floats, results.Floats | None],
    points: datasets.Points | None,
    parameters: dict[str, float],
) -> bytes:
    """The SVG of a job's loss curves (left) and learned curve over its points (right)."""
    # Imported here, not with the app: serve starts without paying for matplotlib until a plot is asked for.
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    # A Figure of its own and no pyplot: pyplot's current figure is global state, and requests run in threads.
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasSVG(figure)
    loss_ax, fit_ax = figure.subplots(1, 2)
    _draw_losses(loss_ax, *history)
    _draw_fit(fit_ax, points, parameters)
    # A title holds the job's name, which is text: never mathtext ("$\\frac{1}{$" is a parse error).
    figure.suptitle(title, parse_math=False)
    out = io.BytesIO()
    figure.savefig(out, format="svg", metadata={"Title": title, "Date": None})
    return out.getvalue()


@router.get(
    "/{job_id}/plot.svg",
    response_class=Response,
    responses={**SVG, **error(409, "The job has no result yet.")},
)
def job_plot(job: JobDep, session: SessionDep) -> Response:
    """The loss (and validation loss) by epoch on a log scale, and the learned curve over the
    dataset's points, as one SVG; 409 until the job has a result (succeeded, or stopped with a
    partial one)."""
    if job.status in ACTIVE or job.result is None:
        raise Conflict(f"job {job.id} is {job.status}: there is a plot once it has a result")
    # At most a few thousand of each: a plot of a million epochs reads the database's slice only.
    history = results.read_history(session, job.id, 0, 0, None, HISTORY_POINTS)
    points = datasets.read_points(session=session, dataset_id=job.dataset_id, max_points=DATASET_POINTS)
    title = _title(job.id, job.name, job.hyperparameters, job.result)
    svg = render(title, history, points, job.result["parameters"])
    headers = {"Content-Disposition": f'inline; filename="{job.id}.svg"'}
    return Response(svg, media_type="image/svg+xml", headers=headers)
