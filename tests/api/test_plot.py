"""What plots read: a dataset's points (GET /v1/datasets/{id}/points) and a job's plot.svg, drawn by
matplotlib on a real `tinytrain serve`."""

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import PARAMETER_NAMES
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.keys import bearer
from tests.support.server import Server

SVG = "{http://www.w3.org/2000/svg}"
LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 1_000_000}  # trains past any test; cancelled


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def stranger(server: Server) -> Iterator[httpx.Client]:
    with server.client(server.new_key("stranger")) as c:
        yield c


def job(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def vertices(path: ET.Element) -> int:
    """The points a <path>'s d draws through: one per move or line command (matplotlib drops
    those a straight segment would draw the same, so a smooth curve has fewer than its data)."""
    return len(re.findall(r"[ML]", path.get("d", "")))


def drawn(svg: ET.Element, gid: str) -> ET.Element:
    """The group matplotlib wrote for the artist with this gid."""
    group = svg.find(f".//{SVG}g[@id='{gid}']")
    assert group is not None, f"no element with id {gid}"
    return group


def test_points_come_in_stored_order_or_evenly_spaced(client: httpx.Client, stranger: httpx.Client) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.permutation(50).astype(float) / 7, rng.standard_normal(50)
    r = client.post("/v1/datasets", json={"x": x.tolist(), "y": y.tolist()})
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]

    whole = client.get(f"/v1/datasets/{dataset_id}/points")
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/json"
    assert whole.json() == {"x": x.tolist(), "y": y.tolist()}  # bit for bit, in the order sent
    for n, picked in [(2, [0, 49]), (5, [0, 12, 24, 37, 49]), (50, list(range(50))), (1000, list(range(50)))]:
        got = client.get(f"/v1/datasets/{dataset_id}/points", params={"max_points": n}).json()
        assert got == {"x": x[picked].tolist(), "y": y[picked].tolist()}, n

    for bad in (1, 0, -1, 1_000_001, "many"):
        assert client.get(f"/v1/datasets/{dataset_id}/points", params={"max_points": bad}).status_code == 422, bad
    assert client.get("/v1/datasets/ds_0123456789abcdef01234567/points").status_code == 404
    assert stranger.get(f"/v1/datasets/{dataset_id}/points").status_code == 404  # another owner's
    assert httpx.get(f"{client.base_url}/v1/datasets/{dataset_id}/points", headers=bearer("tt_no")).status_code == 401


def test_plot_svg_draws_the_loss_curves_and_the_learned_curve(client: httpx.Client) -> None:
    hyperparameters = {"learning_rate": 0.3, "batch_size": 8, "epochs": 400, "validation_fraction": 0.25}
    job_id = job(client, {"dataset": sine_points(200), "hyperparameters": hyperparameters, "name": "for the report"})
    wait_for(client, job_id, "succeeded")

    r = client.get(f"/v1/jobs/{job_id}/plot.svg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/svg+xml"
    svg = ET.fromstring(r.content)  # well-formed XML
    assert svg.tag == f"{SVG}svg"
    assert "for the report" in "".join(svg.itertext())  # the title names the job
    for gid in ("loss", "validation_loss", "fit"):
        (path,) = drawn(svg, gid).iter(f"{SVG}path")
        assert vertices(path) >= 20, gid
    assert len(list(drawn(svg, "points").iter(f"{SVG}use"))) == 200  # a marker for each point


def test_a_long_history_and_dataset_are_plotted_from_a_slice(client: httpx.Client) -> None:
    job_id = job(client, {"dataset": sine_points(5000), "hyperparameters": {"batch_size": 5000, "epochs": 6000}})
    wait_for(client, job_id, "succeeded", timeout=120)
    svg = ET.fromstring(client.get(f"/v1/jobs/{job_id}/plot.svg").content)
    with pytest.raises(AssertionError):
        drawn(svg, "validation_loss")  # no split, no curve
    (loss,) = drawn(svg, "loss").iter(f"{SVG}path")
    assert vertices(loss) >= 20
    assert len(list(drawn(svg, "points").iter(f"{SVG}use"))) == 3000  # at most 3,000 of the 5,000 points


def test_plot_svg_needs_a_result_and_an_owner(client: httpx.Client, stranger: httpx.Client) -> None:
    job_id = job(client, {"dataset": sine_points(2000), "hyperparameters": LONG})
    wait_for(client, job_id, "running", epochs_completed=1)
    r = client.get(f"/v1/jobs/{job_id}/plot.svg")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    assert stranger.get(f"/v1/jobs/{job_id}/plot.svg").status_code == 404
    assert client.get("/v1/jobs/job_0123456789abcdef01234567/plot.svg").status_code == 404

    # A cancelled job keeps its partial result, and so has a plot of the epochs it ran.
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    ended = wait_for(client, job_id, "cancelled")
    r = client.get(f"/v1/jobs/{job_id}/plot.svg")
    assert r.status_code == 200, r.text
    svg = ET.fromstring(r.content)
    assert f"{ended['result']['epochs_completed']:,} of 1,000,000 epochs" in "".join(svg.itertext())


def test_plots_drawn_at_once_in_threads_are_whole(client: httpx.Client) -> None:
    job_id = job(client, {"dataset": sine_points(300), "hyperparameters": {"epochs": 200, "batch_size": 10}})
    wait_for(client, job_id, "succeeded")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.get(f"/v1/jobs/{job_id}/plot.svg"), range(8)))
    for r in answers:
        assert r.status_code == 200, r.text
        svg = ET.fromstring(r.content)
        assert len(list(drawn(svg, "points").iter(f"{SVG}use"))) == 300


FINITE = st.floats(allow_nan=False, allow_infinity=False)
PRINTABLE = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=200)


@settings(max_examples=12, deadline=None)
@given(
    name=PRINTABLE,
    x=st.lists(FINITE, min_size=1, max_size=5),
    y=st.lists(FINITE, min_size=1, max_size=5),
    parameters=st.lists(FINITE, min_size=7, max_size=7),
    loss=st.lists(st.floats(min_value=0, allow_infinity=False), min_size=0, max_size=5),
)
def test_any_name_points_parameters_and_losses_make_a_whole_svg(
    name: str, x: list[float], y: list[float], parameters: list[float], loss: list[float]
) -> None:
    """No value of a float64 run and no text of a name is a failure to draw (nor read as markup)."""
    from api.routes.plots import render

    n = min(len(x), len(y))
    history = (np.arange(1, len(loss) + 1), np.array(loss), None)
    svg = render(name, history, (np.array(x[:n]), np.array(y[:n])), dict(zip(PARAMETER_NAMES, parameters, strict=True)))
    title = ET.fromstring(svg).find(f".//{SVG}title")
    assert title is not None and title.text == name
