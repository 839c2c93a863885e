"""The baselines of the read benchmark: bare FastAPI endpoints returning a tiny job's JSON body.

/bare is a `def` endpoint (FastAPI runs it in its thread pool, as any endpoint that blocks);
/bare-async an `async def` one, FastAPI's floor: no thread hop, no work at all."""

from typing import Any

from fastapi import FastAPI

app = FastAPI()

BODY: dict[str, Any] = {
    "id": "job_0123456789abcdef01234567",
    "name": None,
    "status": "succeeded",
    "dataset_id": "ds_0123456789abcdef0123",
    "hyperparameters": {
        "learning_rate": 0.1,
        "batch_size": 32,
        "epochs": 10,
        "seed": 0,
        "shuffle": True,
        "drop_last": False,
        "initial_parameters": None,
        "validation_fraction": 0.0,
        "early_stopping": None,
        "dtype": "float32",
        "device": "auto",
    },
    "max_runtime_seconds": None,
    "progress": {"epochs_completed": 10, "epochs": 10, "last_loss": 0.01},
    "created_at": "2026-11-27T10:00:00.000001Z",
    "started_at": "2026-11-27T10:00:00.000002Z",
    "finished_at": "2026-11-27T10:00:00.000003Z",
    "device": "cpu",
    "attempts": 1,
    "error": None,
    "result": {
        "parameters": {"w11": 1.0, "w12": -1.0, "b11": 0.1, "b12": -0.1, "w21": 0.5, "w22": -0.5, "b2": 0.0},
        "loss_history": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01],
        "validation_loss_history": None,
        "initial_loss": 0.6,
        "final_loss": 0.01,
        "epochs_completed": 10,
        "stopped_early": False,
        "training_seconds": 0.001,
    },
}


@app.get("/bare/{job_id}")
def bare(job_id: str) -> dict[str, Any]:
    return BODY


@app.get("/bare-async/{job_id}")
async def bare_async(job_id: str) -> dict[str, Any]:
    return BODY
