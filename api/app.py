"""The FastAPI app: routes under /v1, docs served without a CDN, limits, error mapping."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import errors
from api.deps import KeyBeforeBody
from api.headers import SecurityHeaders
from api.limits import BodySizeLimit
from api.live import Watcher
from api.ratelimit import RateLimit
from api.routes import datasets, events, export, hyperparameters, jobs, metrics, plots, service, sweeps, ui, webhooks
from jobs.settings import Settings, get_settings
from worker.celery_executor import CeleryExecutor
from worker.deliverer import Deliverer
from worker.executor import Executor
from worker.local import LocalExecutor
from worker.reaper import Reaper

DESCRIPTION = """Send (x, y) points and hyperparameters; workers train a 1-2-1 network
(one input, two sigmoid hidden units, one linear output) by mini-batch gradient descent and
return the seven parameters w11, w12, b11, b12, w21, w22, b2 with the loss history.

Every `/v1` route needs `Authorization: Bearer <api key>`."""


def make_executor(settings: Settings) -> Executor:
    """The executor TINYTRAIN_EXECUTOR names."""
    if settings.executor == "celery":
        return CeleryExecutor(settings)
    return LocalExecutor(settings.local_workers)


def create_app() -> FastAPI:
    """The app of one `serve` process, with the executor TINYTRAIN_EXECUTOR names (started,
    recovered and reaped with the app)."""
    settings = get_settings()
    executor = make_executor(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        app.state.watcher.start()
        executor.start(app.state.watcher.poke)
        # Its first pass sends every queued run: a message sent before a restart may be lost.
        # In the thread, so that serve starts (and says what is down) while the queue is down.
        reaper = Reaper(executor.dispatch, send_all_first=True)
        reaper.start()
        deliverer = Deliverer()
        deliverer.start()
        yield
        deliverer.stop()
        reaper.stop()
        await app.state.watcher.stop()
        executor.shutdown()

    app = FastAPIOffline(
        title="tinytrain",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Operation ids are the route functions' names (submit_job, get_result): a generated
        # client's methods read as the API does, not as submit_job_v1_jobs_post.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.executor = executor
    app.state.readiness = service.Readiness(executor)
    app.state.metrics = metrics.Exporter(app.state.readiness)
    app.state.watcher = Watcher(
        settings.progress_interval_seconds,
        settings.max_streams_per_owner,
        settings.max_waiting_per_owner,
        settings.stream_bytes_per_second_per_owner,
    )
    app.state.rate_limit = RateLimit(settings)
    # Included flat, not through a /v1 parent router: every nesting level is matched per request.
    routers = (datasets, jobs, plots, sweeps, events, hyperparameters, export, webhooks)
    for router in (r.router for r in routers):
        app.include_router(router, prefix="/v1", responses=errors.ERRORS)
    app.include_router(service.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.mount("/ui", ui.files, name="ui")
    # The key before the body (KeyBeforeBody), inside the cheaper check of its declared size.
    app.add_middleware(KeyBeforeBody)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        max_predict_points=settings.max_predict_points,
        body_timeout=settings.body_timeout_seconds,
    )
    # The latency of every answer, the 401s, 413s and 429s of the checks inside too.
    app.add_middleware(metrics.RequestLatency)
    # Outermost: every answer gets its headers.
    app.add_middleware(SecurityHeaders)
    errors.install(app)
    return app
