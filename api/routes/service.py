"""/healthz and /readyz: liveness of the process, readiness of the database and the queue.
/ sends a browser to the docs."""

import asyncio
import time
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text

from api import schemas
from jobs.db import get_engine
from worker.executor import Executor

router = APIRouter(tags=["service"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    # Someone who opens the bare address in a browser lands on the reference, not a 404.
    return RedirectResponse("/docs", status_code=307)


@router.get("/healthz", response_model=schemas.Health)
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    # On the event loop: a sync route would wait for a request thread, and slow reads that hold
    # every thread must not make a serving process look dead.
    return {"status": "ok"}


class Readiness:
    """What /readyz says, found out at most once a second however often it is asked, in a
    thread of its own: a load balancer's polls must not queue behind requests, nor add load."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._lock = asyncio.Lock()
        self._thread = anyio.CapacityLimiter(1)
        self._down: list[str] = []
        self._until = 0.0

    def _check(self) -> list[str]:
        down = []
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            down.append("database")
        if not self.executor.ready():
            down.append("queue")
        return down

    async def down(self) -> list[str]:
        """What does not answer: "database", "queue"."""
        async with self._lock:
            if time.monotonic() >= self._until:
                self._down = await anyio.to_thread.run_sync(self._check, limiter=self._thread)
                self._until = time.monotonic() + 1.0
            return self._down


@router.get(
    "/readyz",
    response_model=schemas.Ready,
    responses={503: {"model": schemas.ErrorOut, "description": "The database or the queue does not answer."}},
)
async def readyz(request: Request) -> Any:
    """200 when the database and the queue answer, else 503 naming which (found out at most once a second)."""
    readiness: Readiness = request.app.state.readiness
    down = await readiness.down()
    if down:
        return JSONResponse({"detail": f"not ready: {' and '.join(down)} not answering"}, status_code=503)
    return {"status": "ready"}
