"""/healthz and /readyz: liveness of the process, readiness of the database and the queue.
/ sends a browser to the docs."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text

from api.deps import ExecutorDep
from jobs.db import get_engine

router = APIRouter(tags=["service"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    # Someone who opens the bare address in a browser lands on the reference, not a 404.
    return RedirectResponse("/docs", status_code=307)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database or the queue does not answer."}})
def readyz(executor: ExecutorDep) -> Any:
    """200 when the database and the queue answer, else 503 naming which."""
    down = []
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        down.append("database")
    if not executor.ready():
        down.append("queue")
    if down:
        return JSONResponse({"detail": f"not ready: {' and '.join(down)} not answering"}, status_code=503)
    return {"status": "ready"}
