"""A client generated from the live /openapi.json by openapi-python-client, as a new user makes one
(no configuration, offline): generated without a warning, and used for the first steps: upload
(JSON and CSV), submit, wait, result, predict. And the upload's CSV content types and name query
parameter that the generated client relies on."""

import importlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest

from tests.support.cli import BIN
from tests.support.server import Server

PACKAGE = "tinytrain_client"  # the generator's name for a document titled tinytrain
CSV = b"x,y\n0,0\n1,1\n2,0\n3,1\n"
# The one response no generator can type: an SVG image is not JSON, text or a file of bytes. The
# generator leaves it out and says so; the generated function still returns its bytes.
SVG_PLOT = "GET /v1/jobs/{job_id}/plot.svg"


@pytest.fixture(scope="module")
def generated(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ModuleType]]:
    """What openapi-python-client printed, and the package it generated, importable."""
    out = tmp_path_factory.mktemp("generated")
    (out / "openapi.json").write_text(httpx.get(f"{shared_server.url}/openapi.json").text)
    # The venv's bin on PATH, as for a user who installed the generator: its ruff formats the code.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json", "--output-path", "client"],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out / "client"))
    try:
        yield done.stdout + done.stderr, importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out / "client"))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generator_warns_of_nothing_but_the_svg_plot(generated: tuple[str, ModuleType]) -> None:
    printed, _ = generated
    # Each warning is a block that starts "WARNING parsing METHOD PATH within TAG."
    warned = re.findall(r"WARNING parsing (\S+ \S+) within", printed)
    assert warned == [SVG_PLOT] or not warned, printed
    if warned:
        assert "Unsupported content_type image/svg+xml" in printed, printed
    assert "ruff is not in PATH" not in printed, printed
    assert "Skipping" not in printed, printed


def test_the_generated_client_uploads_trains_waits_and_predicts(
    shared_server: Server, generated: tuple[str, ModuleType]
) -> None:
    _, client_package = generated
    models, types = module("models"), module("types")
    upload = module("api.datasets.upload_dataset")
    submit, get_job, get_result, predict = (
        module(f"api.jobs.{op}") for op in ("submit_job", "get_job", "get_result", "predict")
    )
    healthz, readyz = module("api.service.healthz"), module("api.service.readyz")
    client = client_package.AuthenticatedClient(
        base_url=shared_server.url, token=shared_server.key, raise_on_unexpected_status=True
    )
    with client:
        as_json = models.UploadDatasetJsonDatasetIn(x=[0.0, 1.0, 2.0, 3.0], y=[0.0, 1.0, 0.0, 1.0], name="toy")
        stored = upload.sync(client=client, body=as_json)
        assert isinstance(stored, models.Dataset) and stored.name == "toy" and stored.n_points == 4

        csv = types.File(payload=io.BytesIO(CSV), file_name="points.csv", mime_type="text/csv")
        from_csv = upload.sync(client=client, body=csv, name="from csv")
        assert isinstance(from_csv, models.Dataset) and from_csv.name == "from csv" and from_csv.n_points == 4
        assert from_csv.sha256 == stored.sha256  # the same points

        body = models.JobIn(dataset_id=from_csv.id, hyperparameters=models.Hyperparameters(learning_rate=0.5))
        job = submit.sync(client=client, body=body)
        assert isinstance(job, models.Job) and job.dataset_id == from_csv.id
        # Resolved: every field present, batch_size the number that "not given" chose.
        hp = job.hyperparameters
        assert isinstance(hp, models.ResolvedHyperparameters)
        assert hp.batch_size == 4 and isinstance(hp.batch_size, int) and hp.learning_rate == 0.5
        assert hp.epochs == 100 and hp.early_stopping is None and hp.initial_parameters is None
        assert hp.dtype == models.ResolvedHyperparametersDtype.FLOAT32

        waited = get_job.sync(job.id, client=client, prefer="wait=30")
        assert isinstance(waited, models.Job) and waited.status == models.Status.SUCCEEDED
        assert isinstance(waited.result, models.ResultSummary)

        result = get_result.sync(job.id, client=client)
        assert isinstance(result, models.Result) and isinstance(result.parameters, models.Parameters)
        assert isinstance(result.parameters.w11, float) and result.parameters.w11 == waited.result.parameters.w11
        assert len(result.loss_history) == 100 and result.final_loss == result.loss_history[-1]

        predicted = predict.sync(job.id, client=client, body=models.PredictIn(x=[0.0, 1.5, 3.0]))
        assert isinstance(predicted, models.PredictOut) and len(predicted.y) == 3
        assert all(isinstance(y, float) for y in predicted.y)

        health, ready = healthz.sync(client=client), readyz.sync(client=client)
        assert isinstance(health, models.Health) and isinstance(ready, models.Ready) and ready.status == "ready"


@pytest.mark.parametrize("content_type", ["text/csv", "application/octet-stream"])
def test_a_csv_upload_is_named_by_the_query(shared_server: Server, content_type: str) -> None:
    with shared_server.client() as c:
        headers = {"Content-Type": content_type}
        named = c.post("/v1/datasets", params={"name": "sine"}, content=CSV, headers=headers)
        assert named.status_code == 201 and named.json()["name"] == "sine" and named.json()["n_points"] == 4
        unnamed = c.post("/v1/datasets", content=CSV, headers=headers)
        assert unnamed.status_code == 201 and unnamed.json()["name"] is None
        for bad in ["", "a\nb", "n" * 201]:
            refused = c.post("/v1/datasets", params={"name": bad}, content=CSV, headers=headers)
            assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "name"]


def test_a_json_upload_takes_the_query_name_only_where_it_agrees(shared_server: Server) -> None:
    points = {"x": [0.0, 1.0], "y": [1.0, 2.0]}
    with shared_server.client() as c:
        assert c.post("/v1/datasets", json=points).json()["name"] is None  # as before
        assert c.post("/v1/datasets", json={**points, "name": "a"}).json()["name"] == "a"
        assert c.post("/v1/datasets", params={"name": "q"}, json=points).json()["name"] == "q"
        same = c.post("/v1/datasets", params={"name": "a"}, json={**points, "name": "a"})
        assert same.status_code == 201 and same.json()["name"] == "a"
        differ = c.post("/v1/datasets", params={"name": "b"}, json={**points, "name": "a"})
        assert differ.status_code == 422 and differ.json()["detail"][0]["loc"] == ["query", "name"]


def test_a_retry_with_another_query_name_is_another_request(shared_server: Server) -> None:
    with shared_server.client() as c:
        key = {"Idempotency-Key": "named-csv", "Content-Type": "text/csv"}
        first = c.post("/v1/datasets", params={"name": "one"}, content=CSV, headers=key)
        assert first.status_code == 201
        # The same CSV as application/octet-stream is the same request.
        again = c.post(
            "/v1/datasets",
            params={"name": "one"},
            content=CSV,
            headers=key | {"Content-Type": "application/octet-stream"},
        )
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        other = c.post("/v1/datasets", params={"name": "two"}, content=CSV, headers=key)
        assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


def test_a_sweeps_hyperparameters_are_typed_too(shared_server: Server, generated: tuple[str, ModuleType]) -> None:
    _, client_package = generated
    models = module("models")
    submit, get_sweep, list_trials = (module(f"api.sweeps.{op}") for op in ("submit_sweep", "get_sweep", "list_trials"))
    client = client_package.AuthenticatedClient(
        base_url=shared_server.url, token=shared_server.key, raise_on_unexpected_status=True
    )
    grid = models.SweepInGridType0.from_dict({"learning_rate": [0.1, 0.5], "batch_size": [2]})
    points = models.Points(x=[0.0, 1.0, 2.0, 3.0], y=[0.0, 1.0, 0.0, 1.0])
    with client:
        sweep = submit.sync(client=client, body=models.SweepIn(dataset=points, grid=grid))
        assert isinstance(sweep, models.Sweep) and sweep.hyperparameters.batch_size == 4  # the base's, resolved
        deadline = time.monotonic() + 60
        while sweep.status != models.Status.SUCCEEDED:
            assert time.monotonic() < deadline and sweep.status in (models.Status.QUEUED, models.Status.RUNNING)
            time.sleep(0.1)
            sweep = get_sweep.sync(sweep.id, client=client)
        assert isinstance(sweep.best, models.Best) and sweep.best.hyperparameters.learning_rate in (0.1, 0.5)
        assert isinstance(sweep.best.parameters.w11, float)
        trials = list_trials.sync(sweep.id, client=client)
        assert isinstance(trials, models.PageTrial)
        assert [t.hyperparameters.learning_rate for t in trials.items] == [0.1, 0.5]
        assert all(t.hyperparameters.batch_size == 2 for t in trials.items)
