"""Small reliability fixes: a CSV first line that is data, float32 range and learning-rate
underflow at admission, and the local CLI's limits."""

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from api import schemas
from jobs import admission, datasets, migrate
from jobs.db import make_engine
from jobs.errors import InvalidInput
from jobs.settings import Settings
from model.csvdata import CsvError, parse_points
from tests.support.cli import run
from tests.support.server import Server

# -- 13: the CSV first line


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("\ufeff1,2\n3,4\n", ([1.0, 3.0], [2.0, 4.0])),  # a BOM, then data: the first point is kept
        ("1,2\n3,4\n", ([1.0, 3.0], [2.0, 4.0])),
        ("x,y\n1,2\n", ([1.0], [2.0])),  # a header: no number in it
        ("\ufeffx,y\n1,2\n", ([1.0], [2.0])),  # a BOM, then a header
    ],
)
def test_csv_keeps_a_first_line_of_data_and_drops_a_header(text: str, points: tuple[list[float], list[float]]) -> None:
    assert parse_points(text) == points


@pytest.mark.parametrize("text", ["1,abc\n2,3\n", "\ufeff1,abc\n2,3\n", "abc,1\n2,3\n"])
def test_csv_first_line_with_a_number_and_a_non_number_is_an_error_naming_line_1(text: str) -> None:
    with pytest.raises(CsvError, match="line 1"):
        parse_points(text)


def test_csv_upload_whose_first_line_is_a_bad_point_is_422(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as c:
        bad = c.post("/v1/datasets", content="1,abc\n2,3\n", headers={"Content-Type": "text/csv"})
        assert bad.status_code == 422 and "line 1" in bad.text, bad.text
        bom = c.post("/v1/datasets", content="\ufeff1,2\n3,4\n".encode(), headers={"Content-Type": "text/csv"})
        assert bom.status_code == 201 and bom.json()["n_points"] == 2, bom.text
        # 14 over HTTP too: inline points and a stored dataset beyond float32's range
        hp = {"batch_size": 1, "epochs": 1}
        inline = c.post("/v1/jobs", json={"dataset": {"x": [1e39, 0.0], "y": [0.0, 1.0]}, "hyperparameters": hp})
        assert inline.status_code == 422 and "float32" in inline.text, inline.text
        assert inline.json()["detail"][0]["loc"] == ["body", "dataset", "x"]
        stored = c.post("/v1/datasets", json={"x": [0.0, 1.0], "y": [-1e39, 1.0]})
        assert stored.status_code == 201, stored.text
        by_id = c.post("/v1/jobs", json={"dataset_id": stored.json()["id"], "hyperparameters": hp})
        assert by_id.status_code == 422 and "float32" in by_id.text, by_id.text
        fine = c.post(
            "/v1/jobs", json={"dataset_id": stored.json()["id"], "hyperparameters": {**hp, "dtype": "float64"}}
        )
        assert fine.status_code == 202, fine.text
        assert [j["id"] for j in c.get("/v1/jobs").json()["items"]] == [fine.json()["id"]]  # nothing else stored


# -- 14: float32 range and learning-rate underflow, at admission

SETTINGS = Settings()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """A session of a real, migrated SQLite database."""
    url = f"sqlite:///{tmp_path / 'admission.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        yield s
    engine.dispose()


def hyperparameters(**changed: Any) -> dict[str, Any]:
    return schemas.Hyperparameters.model_validate({"batch_size": 1, "epochs": 2, **changed}).model_dump()


def request(
    hp: dict[str, Any], *, points: datasets.Points | None = None, dataset_id: str | None = None, **sweep: Any
) -> admission.Request:
    return admission.Request(
        owner="ann",
        hyperparameters=hp,
        dataset_id=dataset_id,
        points=points,
        name=None,
        max_runtime_seconds=None,
        idempotency_key=None,
        request_hash="h",
        **sweep,
    )


def admit(session: Session, req: admission.Request) -> admission.Admitted:
    admit_one = admission.admit_sweep if req.grid is not None or req.random is not None else admission.admit_job
    return admit_one(session=session, request=req, settings=SETTINGS, has_cuda=lambda: False)


def stored(session: Session, x: list[float], y: list[float]) -> str:
    row, _ = datasets.create(
        session=session, dataset=datasets.build(owner="ann", x=np.array(x), y=np.array(y), name=None)
    )
    return row.id


@pytest.mark.parametrize("axis", ["x", "y"])
def test_inline_points_beyond_float32_range_are_refused_naming_the_field(session: Session, axis: str) -> None:
    big = {"x": np.array([0.0, 1.0]), "y": np.array([0.0, 1.0])}
    big[axis] = np.array([0.0, -1e39])
    with pytest.raises(InvalidInput, match="beyond float32 range; use dtype float64") as caught:
        admit(session, request(hyperparameters(), points=(big["x"], big["y"])))
    assert caught.value.loc == ("body", "dataset", axis)
    sweep = request(hyperparameters(), points=(big["x"], big["y"]), grid={"learning_rate": [0.1, 0.2]})
    with pytest.raises(InvalidInput, match="float32") as caught:
        admit(session, sweep)
    assert caught.value.loc == ("body", "dataset", axis)
    # float64 holds them, and float32 the largest finite float32
    assert admit(session, request(hyperparameters(dtype="float64"), points=(big["x"], big["y"]))).row is not None
    edge = np.array([0.0, float(np.finfo(np.float32).max)])
    assert admit(session, request(hyperparameters(), points=(edge, edge))).row is not None


def test_a_stored_dataset_beyond_float32_range_is_refused_naming_dataset_id(session: Session) -> None:
    dataset_id = stored(session, [0.0, 1.0], [2e39, 1.0])
    with pytest.raises(InvalidInput, match=f"dataset {dataset_id}: y .*beyond float32 range") as caught:
        admit(session, request(hyperparameters(), dataset_id=dataset_id))
    assert caught.value.loc == ("body", "dataset_id")
    with pytest.raises(InvalidInput, match="float32"):
        admit(session, request(hyperparameters(), dataset_id=dataset_id, grid={"epochs": [1, 2]}))
    assert admit(session, request(hyperparameters(dtype="float64"), dataset_id=dataset_id)).row is not None
    small = stored(session, [-3.0, 1.0], [2.0, 1.0])
    assert admit(session, request(hyperparameters(), dataset_id=small)).row is not None


def test_a_learning_rate_that_rounds_to_zero_in_the_dtype_is_refused(session: Session) -> None:
    points = (np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(InvalidInput, match="rounds to 0 in float32") as caught:
        admit(session, request(hyperparameters(learning_rate=1e-46), points=points))
    assert caught.value.loc == ("body", "hyperparameters", "learning_rate")
    # the smallest float32 subnormal is a step, however small; float64 holds 1e-46
    assert admit(session, request(hyperparameters(learning_rate=1.5e-45), points=points)).row is not None
    assert admit(session, request(hyperparameters(learning_rate=1e-46, dtype="float64"), points=points)).row
    # a sweep names the trial
    sweep = request(hyperparameters(), points=points, grid={"learning_rate": [0.1, 1e-300]})
    with pytest.raises(InvalidInput, match="trial 1: learning_rate") as caught:
        admit(session, sweep)
    assert caught.value.loc == ("body", "trials", 1, "learning_rate")


def test_check_runs_applies_the_limits_to_resolved_trainings() -> None:
    settings = Settings(max_epochs=10, max_work=25)
    assert admission.check_runs([hyperparameters(epochs=5)], 5, settings, sweep=False) == 25
    with pytest.raises(InvalidInput, match="at most 10 epochs"):
        admission.check_runs([hyperparameters(epochs=11)], 1, settings, sweep=False)
    with pytest.raises(InvalidInput, match="30 point-epochs is over the limit of 25"):
        admission.check_runs([hyperparameters(epochs=3)] * 2, 5, settings, sweep=True)
    with pytest.raises(InvalidInput, match="over the limit of 2"):
        admission.sweep_trials({"epochs": [1, 2, 3]}, None, Settings(max_trials=2))


# -- 15: the local CLI checks the service's limits


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "d.csv").write_text("0,0\n1,1\n2,0\n3,1\n")
    return tmp_path


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    return str(lines[0])


@pytest.mark.parametrize("epochs", ["100000000000", "2000000000"])
def test_cli_train_past_the_epoch_limit_is_one_line(data: Path, epochs: str) -> None:
    line = one_line_error(run("train", "d.csv", "--epochs", epochs, "--batch-size", "2", cwd=data))
    assert "at most 1000000 epochs" in line


def test_cli_checks_points_work_trials_and_learning_rate(data: Path) -> None:
    env = {**os.environ, "TINYTRAIN_MAX_POINTS": "3"}
    assert "4 points is over the limit of 3" in one_line_error(run("train", "d.csv", cwd=data, env=env))
    env = {**os.environ, "TINYTRAIN_MAX_WORK": "10"}
    line = one_line_error(run("sweep", "d.csv", "--batch-size", "2", "--grid", "epochs=2,2", cwd=data, env=env))
    assert "16 point-epochs is over the limit of 10" in line
    line = one_line_error(run("sweep", "d.csv", "--random", "100000000000", "--range", "learning_rate=0.1:1", cwd=data))
    assert "100000000000 trials is over the limit of 10000" in line
    line = one_line_error(run("train", "d.csv", "--batch-size", "2", "--learning-rate", "1e-46", cwd=data))
    assert "rounds to 0 in float32" in line
    line = one_line_error(run("sweep", "d.csv", "--batch-size", "2", "--grid", "epochs=1,2000000", cwd=data))
    assert "trial 1: at most 1000000 epochs" in line
