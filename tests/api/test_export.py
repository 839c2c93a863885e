"""A trained network taken away: GET .../model?format=onnx|pt2|json from a real `tinytrain serve`,
run by onnxruntime and by torch.export.load alone, predicting what the service's predict does."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.support.cli import run, tinytrain
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.server import Server, clean_env, server_env
from tinytrain.client import Client

# float64: the same arithmetic up to the order of operations; float32: the model computes in float32.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
LONG = {"learning_rate": 0.001, "batch_size": 1, "epochs": 1_000_000}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("export")
    started = Server(tmp, server_env(tmp))
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def trained(client: httpx.Client, dtype: str) -> str:
    body = {"dataset": sine_points(200, seed=4), "hyperparameters": {"epochs": 200, "dtype": dtype, "seed": 1}}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    wait_for(client, job_id, "succeeded")
    return job_id


@pytest.fixture(scope="module", params=["float32", "float64"])
def job(request: pytest.FixtureRequest, client: httpx.Client) -> tuple[str, str]:
    return trained(client, request.param), request.param


def probe(dtype: str) -> np.ndarray[Any, np.dtype[Any]]:
    """x across the data's range ([-3, 3]), far beyond it, and at 0."""
    return np.concatenate([np.linspace(-3, 3, 61), [-1e4, -50.0, -7.5, 0.0, 7.5, 50.0, 1e4]]).astype(dtype)


def assert_close(actual: Any, expected: Any, dtype: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def predicted(client: httpx.Client, path: str, x: np.ndarray[Any, np.dtype[Any]]) -> np.ndarray[Any, np.dtype[Any]]:
    r = client.post(f"{path}/predict", json={"x": x.astype(float).tolist()})
    assert r.status_code == 200, r.text
    return np.array(r.json()["y"], dtype=float)


def downloaded(client: httpx.Client, path: str, fmt: str) -> bytes:
    r = client.get(f"{path}/model", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    assert r.headers["content-disposition"].endswith(f'.{fmt}"')
    return r.content


def test_onnx_predicts_what_the_service_predicts(client: httpx.Client, job: tuple[str, str]) -> None:
    job_id, dtype = job
    content = downloaded(client, f"/v1/jobs/{job_id}", "onnx")
    proto = onnx.load_from_string(content)
    onnx.checker.check_model(proto)
    assert {i.name for i in proto.graph.initializer} == {"w11", "w12", "b11", "b12", "w21", "w22", "b2"}
    assert [o.version for o in proto.opset_import] == [17]
    parameters = client.get(f"/v1/jobs/{job_id}/result").json()["parameters"]
    for init in proto.graph.initializer:
        assert float(onnx.numpy_helper.to_array(init)) == parameters[init.name]

    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == ("tensor(float)" if dtype == "float32" else "tensor(double)")
    x = probe(dtype)
    (y,) = session.run(None, {"x": x.reshape(-1, 1)})
    assert y.shape == (x.size, 1) and y.dtype == np.dtype(dtype)
    assert_close(y[:, 0], predicted(client, f"/v1/jobs/{job_id}", x), dtype)


LOAD_ALONE = """
import io, json, sys
import torch
program = torch.export.load(sys.argv[1])
x = torch.tensor(json.loads(sys.argv[2]), dtype=getattr(torch, sys.argv[3])).reshape(-1, 1)
y = program.module()(x)
assert y.dtype == x.dtype and tuple(y.shape) == (x.shape[0], 1), (y.dtype, y.shape)
ours = sorted(m for m in sys.modules if m.split(".")[0] in {"model", "jobs", "api", "worker", "tinytrain"})
print(json.dumps({"y": y.detach().double().flatten().tolist(), "ours": ours}))
"""


def test_torch_export_program_loads_alone(client: httpx.Client, job: tuple[str, str], tmp_path: Path) -> None:
    job_id, dtype = job
    file = tmp_path / "model.pt2"
    file.write_bytes(downloaded(client, f"/v1/jobs/{job_id}", "pt2"))
    x = probe(dtype)
    # A fresh interpreter in an empty folder, importing torch only.
    out = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_ALONE, str(file), json.dumps(x.astype(float).tolist()), dtype],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(out.stdout)
    assert answer["ours"] == []
    assert_close(answer["y"], predicted(client, f"/v1/jobs/{job_id}", x), dtype)


def test_json_model_holds_the_formula_and_parameters(client: httpx.Client, job: tuple[str, str]) -> None:
    job_id, dtype = job
    doc = json.loads(downloaded(client, f"/v1/jobs/{job_id}", "json"))
    assert doc["architecture"] == "1-2-1 sigmoid" and doc["dtype"] == dtype
    assert doc["forward"] == "y = w21*s(w11*x+b11) + w22*s(w12*x+b12) + b2, s(z) = 1/(1+exp(-z))"
    assert doc["parameters"] == client.get(f"/v1/jobs/{job_id}/result").json()["parameters"]
    p, x = doc["parameters"], probe("float64")[:61]

    def s(z: np.ndarray[Any, np.dtype[Any]]) -> np.ndarray[Any, np.dtype[Any]]:
        return np.asarray(1 / (1 + np.exp(-z)))

    y = p["w21"] * s(p["w11"] * x + p["b11"]) + p["w22"] * s(p["w12"] * x + p["b12"]) + p["b2"]
    np.testing.assert_allclose(y, predicted(client, f"/v1/jobs/{job_id}", x), rtol=1e-12, atol=1e-12)


def test_a_trial_exports_its_own_network(client: httpx.Client) -> None:
    body = {
        "dataset": sine_points(60, seed=2),
        "hyperparameters": {"epochs": 40, "dtype": "float64", "seed": 3},
        "grid": {"learning_rate": [0.05, 0.5]},
    }
    sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/sweeps/{sweep_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    x = probe("float64")
    outputs = []
    for index in (0, 1):
        path = f"/v1/sweeps/{sweep_id}/trials/{index}"
        session = ort.InferenceSession(downloaded(client, path, "onnx"), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x.reshape(-1, 1)})
        assert_close(y[:, 0], predicted(client, path, x), "float64")
        outputs.append(y[:, 0])
    assert not np.allclose(outputs[0], outputs[1])  # each trial's own parameters, not the first's
    r = client.get(f"/v1/sweeps/{sweep_id}/trials/2/model")
    assert r.status_code == 404


def test_no_model_before_a_result_an_unknown_format_or_another_owner(server: Server, client: httpx.Client) -> None:
    body = {"dataset": sine_points(2000, seed=5), "hyperparameters": LONG}
    running = client.post("/v1/jobs", json=body).json()["id"]
    try:
        r = client.get(f"/v1/jobs/{running}/model")
        assert r.status_code == 409 and "has a result" in r.json()["detail"], r.text
    finally:
        client.post(f"/v1/jobs/{running}/cancel")

    done = trained(client, "float64")
    r = client.get(f"/v1/jobs/{done}/model", params={"format": "keras"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "format"]

    with server.client(server.new_key("export-stranger")) as stranger:
        for fmt in ("onnx", "pt2", "json"):
            assert stranger.get(f"/v1/jobs/{done}/model", params={"format": fmt}).status_code == 404


def test_the_cli_and_the_client_take_the_model_away(server: Server, client: httpx.Client, tmp_path: Path) -> None:
    job_id = trained(client, "float32")
    env = {**clean_env(), "TINYTRAIN_URL": server.url, "TINYTRAIN_API_KEY": server.key}
    said = tinytrain("jobs", "export", job_id, "--format", "onnx", "-o", "model.onnx", env=env, cwd=tmp_path)
    assert "model.onnx" in said
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = probe("float32")
    (y,) = session.run(None, {"x": x.reshape(-1, 1)})
    assert_close(y[:, 0], predicted(client, f"/v1/jobs/{job_id}", x), "float32")
    tinytrain("jobs", "export", job_id, "--format", "json", env=env, cwd=tmp_path)
    assert json.loads((tmp_path / f"{job_id}.json").read_text())["dtype"] == "float32"
    bad = run("jobs", "export", job_id, "--format", "keras", env=env, cwd=tmp_path)
    assert bad.returncode == 2

    with Client(server.url, server.key) as tt:
        assert tt.export(job_id, "pt2")[:2] == b"PK"  # a torch.export archive is a zip
        assert json.loads(tt.export(job_id, "json"))["parameters"] == tt.result(job_id).parameters.model_dump()
