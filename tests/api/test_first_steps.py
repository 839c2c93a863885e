"""What a newcomer meets first: the bare address of a running service."""

import httpx

from tests.support.server import Server

WAIT = {"Prefer": "wait=30"}


def test_root_redirects_to_the_docs(shared_server: Server) -> None:
    response = httpx.get(f"{shared_server.url}/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["Location"] == "/docs"


def test_the_first_job_on_a_small_dataset_works_with_the_default_batch_size(shared_server: Server) -> None:
    """No batch_size given: all the training points, at most 32; one given is taken as it is."""
    points = {"x": [0.1 * i for i in range(10)], "y": [0.2 * i for i in range(10)]}
    with shared_server.client() as c:
        job = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": {"epochs": 5}}, headers=WAIT)
        assert job.status_code == 200 and job.json()["status"] == "succeeded", job.text
        assert job.json()["hyperparameters"]["batch_size"] == 10
        held_out = {"epochs": 5, "validation_fraction": 0.2}
        job = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": held_out}, headers=WAIT)
        assert job.json()["hyperparameters"]["batch_size"] == 8 and job.json()["status"] == "succeeded"
        sweep = c.post("/v1/sweeps", json={"dataset": points, "grid": {"learning_rate": [0.1, 0.2]}})
        assert sweep.status_code == 202 and sweep.json()["hyperparameters"]["batch_size"] == 10
        too_big = c.post("/v1/jobs", json={"dataset": points, "hyperparameters": {"batch_size": 11}})
        assert too_big.status_code == 422 and "batch_size 11 is larger than the 10 training points" in too_big.text
        many = {"x": [0.01 * i for i in range(100)], "y": [0.0] * 100}
        job = c.post("/v1/jobs", json={"dataset": many, "hyperparameters": {"epochs": 1}}, headers=WAIT)
        assert job.json()["hyperparameters"]["batch_size"] == 32
