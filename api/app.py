"""The FastAPI app: routes under /v1, docs served without a CDN, limits, error mapping."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import errors
from api.limits import BodySizeLimit
from api.ratelimit import RateLimit
from api.routes import datasets, jobs, service, sweeps
from jobs import db, lifecycle
from jobs.settings import get_settings
from worker.executor import make_executor
from worker.reaper import Reaper

DESCRIPTION = """Send (x, y) points and hyperparameters; workers train a 1-2-1 network
(one input, two sigmoid hidden units, one linear output) by mini-batch gradient descent and
return the seven parameters w11, w12, b11, b12, w21, w22, b2 with the loss history.

Every `/v1` route needs `Authorization: Bearer <api key>`."""


def create_app() -> FastAPI:
    """The app of one `serve` process, with the executor TINYTRAIN_EXECUTOR names (started,
    recovered and reaped with the app)."""
    settings = get_settings()
    executor = make_executor(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        executor.start()
        with db.session_scope() as session:
            backlog = lifecycle.queued(session=session)
        for job_id, queue in backlog:  # queued before a restart: their dispatch may be lost
            executor.dispatch(job_id, queue)
        reaper = Reaper(executor.dispatch)
        reaper.start()
        yield
        reaper.stop()
        executor.shutdown()

    app = FastAPIOffline(title="tinytrain", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.executor = executor
    app.state.rate_limit = RateLimit(settings)
    # Included flat, not through a /v1 parent router: every nesting level is matched per request.
    for router in (datasets.router, jobs.router, sweeps.router):
        app.include_router(router, prefix="/v1", responses=errors.ERRORS)
    app.include_router(service.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    errors.install(app)
    return app
