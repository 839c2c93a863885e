"""Run one job by id: claim the row, load the dataset, train, report, honour cancel and deadline.

The local executor and the Celery task both call run_job; everything it knows comes from the
database row, so a job can be run again (after a lost worker) anywhere, with the same result.
"""

import logging
import time
from dataclasses import asdict
from typing import Any

import model
from jobs import datasets, lifecycle
from jobs.db import session_scope
from jobs.settings import get_settings

log = logging.getLogger(__name__)


def config_from(hyperparameters: dict[str, Any]) -> model.TrainConfig:
    """The engine's configuration from a job's resolved hyperparameters."""
    hp = dict(hyperparameters)
    stopping = hp.pop("early_stopping", None)
    return model.TrainConfig(**hp, early_stopping=model.EarlyStopping(**stopping) if stopping else None)


class _Progress:
    """The engine's callbacks: record epochs, heartbeat a few times a second, decide to stop."""

    def __init__(self, job_id: str, attempt: int, max_runtime_seconds: float | None) -> None:
        self.settings = get_settings()
        self.job_id, self.attempt = job_id, attempt
        self.started = time.monotonic()
        self.deadline = self.started + max_runtime_seconds if max_runtime_seconds else None
        self.last_beat = self.started
        self.epochs = 0
        self.loss: float | None = None
        self.reason: str | None = None  # why the run was stopped: cancelled, timeout or lost

    def on_epoch(self, epoch: int, loss: float) -> None:
        self.epochs, self.loss = epoch, loss

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.reason = "timeout"
        elif now - self.last_beat >= self.settings.progress_interval_seconds:
            self.last_beat = now
            with session_scope() as session:
                cancel = lifecycle.heartbeat(session=session, job_id=self.job_id, attempt=self.attempt,
                                             lease_seconds=self.settings.lease_seconds,
                                             epochs_completed=self.epochs, last_loss=self.loss)  # fmt: skip
            self.reason = "lost" if cancel is None else "cancelled" if cancel else None
        return self.reason is not None


def run_job(job_id: str) -> None:
    """Run the job if it is queued; return quietly if it is gone, cancelled or taken."""
    settings = get_settings()
    with session_scope() as session:
        claim = lifecycle.claim(session=session, job_id=job_id, lease_seconds=settings.lease_seconds)
        points = datasets.load_points(session=session, dataset_id=claim.dataset_id) if claim else None
    if claim is None:
        return
    progress = _Progress(job_id, claim.attempt, claim.max_runtime_seconds)

    def finish(status: str, result: model.TrainResult | None, code: str | None = None, why: str | None = None) -> None:
        with session_scope() as session:
            lifecycle.finish(
                session=session,
                job_id=job_id,
                attempt=claim.attempt,
                status=status,
                result=_result_json(result) if result else None,
                device=result.device if result else None,
                epochs_completed=result.epochs_completed if result else 0,
                last_loss=result.final_loss if result else None,
                error_code=code,
                error_message=why,
            )

    if points is None:
        finish(lifecycle.FAILED, None, "dataset_deleted", f"dataset {claim.dataset_id} was deleted")
        return
    try:
        result = model.train(*points, config_from(claim.hyperparameters), on_epoch=progress.on_epoch,
                             should_stop=progress.should_stop)  # fmt: skip
    except model.TrainingInputError as exc:
        finish(lifecycle.FAILED, None, "invalid_input", str(exc))
        return
    except Exception:
        log.exception("job %s failed", job_id)
        finish(lifecycle.FAILED, None, "internal", "the run failed unexpectedly; see the worker's log")
        return
    if result.diverged:
        finish(
            lifecycle.FAILED, result, "diverged", f"the loss became non-finite after epoch {result.epochs_completed}"
        )
    elif progress.reason == "cancelled":
        finish(lifecycle.CANCELLED, result)
    elif progress.reason == "timeout":
        finish(lifecycle.FAILED, result, "timeout", f"stopped at max_runtime_seconds={claim.max_runtime_seconds}")
    elif progress.reason != "lost":  # a lost lease: a newer attempt owns the job now
        finish(lifecycle.SUCCEEDED, result)


def _result_json(result: model.TrainResult) -> dict[str, Any]:
    out = asdict(result)
    for internal in ("diverged", "stopped", "device"):
        del out[internal]
    return out
