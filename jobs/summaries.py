"""A job or a sweep as listed (the API's JobSummary and SweepSummary), from its row alone: what a
page shows and what a webhook tells."""

from typing import Any

from jobs.tables import Job, Sweep


def _run(row: Job | Sweep) -> dict[str, Any]:
    names = ("id", "name", "status", "dataset_id", "hyperparameters", "max_runtime_seconds")
    return {
        **{name: getattr(row, name) for name in names},
        **{"created_at": row.created_at, "started_at": row.started_at, "finished_at": row.finished_at},
        "error": {"code": row.error_code, "message": row.error_message or ""} if row.error_code else None,
    }


def job(row: Job) -> dict[str, Any]:
    epochs = row.hyperparameters["epochs"]
    progress = {"epochs_completed": row.epochs_completed, "epochs": epochs, "last_loss": row.last_loss}
    return {**_run(row), "progress": progress, "device": row.device, "attempts": row.attempts}


def sweep(row: Sweep) -> dict[str, Any]:
    return {**_run(row), "objective": row.objective}
