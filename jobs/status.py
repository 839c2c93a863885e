"""The status of a job, a sweep, a chunk of a sweep's trials and a trial: one set of names."""

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a trial successive halving ended at a rung


ACTIVE = (Status.QUEUED, Status.RUNNING)
