"""What the dashboard's New job and New sweep forms read from the API, against a real serve:
GET /v1/hyperparameters (each field's default and bounds, what a sweep varies, the service's
limits, as the service applies them) and POST /v1/datasets/parse (a CSV's points, stored nowhere,
a bad line named)."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server, server_env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("forms")
    started = Server(tmp, server_env(tmp, max_epochs="5000", max_points="10", max_trials="50"))
    started.start()
    yield started
    started.stop()


POINTS = {"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "y": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]}


def test_the_hyperparameters_are_those_a_job_resolves_with_the_services_limits(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/hyperparameters").status_code == 401
    with server.client() as c:
        spec = c.get("/v1/hyperparameters").json()
        job = c.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": {}}).json()
        too_long = c.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": {"epochs": 5001}})
        longest = c.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": {"epochs": 5000}})
        not_sweepable = c.post("/v1/sweeps", json={"dataset": POINTS, "grid": {"dtype": ["float32", "float64"]}})
    properties = spec["json_schema"]["properties"]
    assert list(properties) == list(job["hyperparameters"])  # every field, in the API's order
    for name, field in properties.items():
        if field.get("default") is not None:  # batch_size and the objects: null, the service chooses
            assert job["hyperparameters"][name] == field["default"], name
    assert properties["learning_rate"]["exclusiveMinimum"] == 0
    # The epoch limit is this service's setting, and the one a submit applies.
    assert properties["epochs"]["maximum"] == spec["limits"]["max_epochs"] == 5000
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"][-1] == "epochs"
    assert longest.status_code == 202
    assert spec["limits"]["max_points"] == 10 and spec["limits"]["max_trials"] == 50
    assert "learning_rate" in spec["sweepable"] and "dtype" not in spec["sweepable"]
    assert not_sweepable.status_code == 422 and "dtype cannot be swept" in not_sweepable.text
    assert spec["ranges"] == {"learning_rate": "float", "batch_size": "int", "epochs": "int"}
    assert spec["objectives"] == ["final_loss", "final_validation_loss"]


def test_a_csv_is_parsed_and_stored_nowhere(server: Server, tmp_path: Path) -> None:
    csv = {"Content-Type": "text/csv"}
    with server.client() as c:
        before = c.get("/v1/datasets").json()["items"]
        parsed = c.post("/v1/datasets/parse", content="x,y\n-1,0.2\n0,0.5\n\n1,0.8\n", headers=csv)
        quoted = c.post("/v1/datasets/parse", content='"1","2"\r\n3,4\r\n', headers=csv)
        bad = c.post("/v1/datasets/parse", content="x,y\n0,1\n2,oops\n", headers=csv)
        too_many = c.post("/v1/datasets/parse", content="".join(f"{i},{i}\n" for i in range(11)), headers=csv)
        not_text = c.post("/v1/datasets/parse", content=b"1,2\n\xff\xfe,3\n", headers=csv)
        no_key = httpx.post(f"{server.url}/v1/datasets/parse", content="1,2\n", headers=csv)
        after = c.get("/v1/datasets").json()["items"]
    assert parsed.status_code == 200 and parsed.json() == {"x": [-1.0, 0.0, 1.0], "y": [0.2, 0.5, 0.8]}
    assert quoted.status_code == 200 and quoted.json() == {"x": [1.0, 3.0], "y": [2.0, 4.0]}
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body"] and "line 3" in bad.json()["detail"][0]["msg"]
    assert too_many.status_code == 422 and "at most 10 points" in too_many.text
    assert not_text.status_code == 400
    assert no_key.status_code == 401
    assert after == before  # nothing stored
