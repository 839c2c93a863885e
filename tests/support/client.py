"""Helpers for talking to a real server over HTTP."""

import json
import math
import time
from typing import Any

import httpx


def wait_for(client: httpx.Client, job_id: str, *statuses: str, timeout: float = 60, **progress: int) -> dict[str, Any]:
    """Poll a job until its status is one of statuses (and its progress reached what is given)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        reached = all(job["progress"][k] >= v for k, v in progress.items())
        if job["status"] in statuses and reached:
            return job
        assert time.monotonic() < deadline, f"job stuck: {job['status']} {job['progress']} {job['error']}"
        time.sleep(0.02)


def assert_all_finite(text: str) -> None:
    """A response body with no NaN or Infinity anywhere (json.loads would accept them)."""
    assert "NaN" not in text and "Infinity" not in text

    def walk(v: Any) -> None:
        if isinstance(v, float):
            assert math.isfinite(v)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(json.loads(text))


def raw_json(text: str) -> dict[str, Any]:
    """Request arguments that send text as it is, as a JSON body (for bodies json= cannot make)."""
    return {"content": text, "headers": {"Content-Type": "application/json"}}
