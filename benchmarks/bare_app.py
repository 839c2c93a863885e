"""The baseline of the read benchmark: a bare FastAPI endpoint returning a job-sized JSON body."""

from typing import Any

from fastapi import FastAPI

app = FastAPI()

BODY: dict[str, Any] = {
    "id": "job_0123456789abcdef01234567", "name": None, "status": "succeeded", "dataset_id": "ds_0123456789abcdef0123",
    "hyperparameters": {"learning_rate": 0.1, "batch_size": 32, "epochs": 10, "seed": 0, "shuffle": True,
                        "drop_last": False, "initial_parameters": None, "validation_fraction": 0.0,
                        "early_stopping": None, "dtype": "float32", "device": "auto"},
    "progress": {"epochs_completed": 10, "epochs": 10, "last_loss": 0.01},
}  # fmt: skip


@app.get("/bare/{job_id}")
def bare(job_id: str) -> dict[str, Any]:
    return BODY
