"""GET /metrics: the service in Prometheus text format (docs/metrics.md), and RequestLatency,
the middleware that times every request.

Three sources, all aggregates (no owner, key or object id in any label):
- the counters of every process of this `serve` (HTTP and local pool: worker/metrics.py);
- the jobs, sweeps and queues as the database has them, counted at scrape time with a few
  GROUP BY queries, at most once a second per process however often it is scraped;
- the readiness checks, as /readyz finds them."""

import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes.service import Readiness
from jobs.db import new_session, utcnow
from jobs.lifecycle import QUEUES, queue_of
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Job, Sweep, SweepChunk
from worker.metrics import authorized, process_metrics

log = logging.getLogger(__name__)
router = APIRouter(tags=["service"])

REQUEST_SECONDS = Histogram(
    "tinytrain_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template, method and status class.",
    ["route", "method", "status"],
    # Up to a minute: `Prefer: wait` and event streams hold a request open that long and more.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# What generate_latest writes: the text format every Prometheus reads.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# A method outside these is "other": a client must not mint a new series per request.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestLatency:
    """Observes each HTTP request's duration in REQUEST_SECONDS, labelled with the template of
    the route it matched (/v1/jobs/{job_id}), never its path, which carries ids."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it answered

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = _template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUEST_SECONDS.labels(template, method, f"{status // 100}xx").observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The path template of the route the request matched (a 405's too): /v1/jobs/{job_id},
    /ui/{path} for a mount; "unmatched" for a 404, and for what is answered before routing (a
    401 for a body without a valid key, a 413)."""
    # FastAPI keeps an included router's routes under it, their paths without its prefix, and
    # leaves the route's whole template in its part of the scope; older FastAPI copied each
    # route with its whole path, and leaves that route in the scope.
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path_format", None)
    if not template and "endpoint" in scope and scope.get("root_path"):
        template = scope["root_path"] + "/{path}"  # a mount: the path it matched is the root path
    return template if isinstance(template, str) and template else "unmatched"


def _gauge(name: str, documentation: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


def _device(hyperparameters: Any) -> Any:
    """The device of resolved hyperparameters, read in the database (its JSON operator)."""
    return func.coalesce(hyperparameters["device"].as_string(), "auto")


def _queued(session: Session) -> tuple[dict[str, float], dict[str, float]]:
    """(depth, age of the oldest in seconds) of each queue: its queued jobs and sweep chunks."""
    depth = dict.fromkeys(QUEUES.values(), 0.0)
    age = dict.fromkeys(QUEUES.values(), 0.0)
    device = _device(Job.hyperparameters)
    jobs = select(device, func.count(), func.min(Job.created_at)).where(Job.status == Status.QUEUED).group_by(device)
    device = _device(Sweep.hyperparameters)
    chunks = (
        select(device, func.count(), func.min(SweepChunk.created_at))
        .join(Sweep, Sweep.id == SweepChunk.sweep_id)
        .where(SweepChunk.status == Status.QUEUED)
        .group_by(device)
    )
    now = utcnow()
    for query in (jobs, chunks):
        for name, count, oldest in session.execute(query).all():
            queue = queue_of({"device": name})
            depth[queue] += count
            if isinstance(oldest, datetime):
                age[queue] = max(age[queue], (now - oldest).total_seconds())
    return depth, age


def _by_status(session: Session, table: type[Job] | type[Sweep]) -> dict[str, float]:
    counts = dict.fromkeys(Status, 0.0)
    counts.update(session.execute(select(table.status, func.count()).group_by(table.status)).tuples().all())
    return {str(status): count for status, count in counts.items()}


def _failed(session: Session) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "tinytrain_failed_runs",
        "Failed jobs and sweep chunks in the database, by error code (worker_lost: lost max_attempts times).",
        labels=["kind", "error_code"],
    )
    for kind, table in (("job", Job), ("chunk", SweepChunk)):
        query = select(table.error_code, func.count()).where(table.status == Status.FAILED).group_by(table.error_code)
        # worker_lost at 0 too: an alert on its increase needs the series before the first one.
        counts = {"worker_lost": 0, **{code or "": count for code, count in session.execute(query).tuples().all()}}
        for code, count in counts.items():
            family.add_metric([kind, code], count)
    return family


def store_metrics() -> list[Metric]:
    """The gauges of the database: jobs and sweeps by status, the queues, failures by cause."""
    with new_session() as session:
        depth, age = _queued(session)
        return [
            _gauge("tinytrain_jobs", "Jobs in the database, by status.", "status", _by_status(session, Job)),
            _gauge("tinytrain_sweeps", "Sweeps in the database, by status.", "status", _by_status(session, Sweep)),
            _gauge(
                "tinytrain_queue_depth", "Queued jobs and sweep chunks, by the queue of their device.", "queue", depth
            ),
            _gauge(
                "tinytrain_queue_oldest_age_seconds",
                "Age of the oldest queued job or sweep chunk of each queue, since it was submitted; 0 when empty.",
                "queue",
                age,
            ),
            _failed(session),
        ]


class _Families:
    def __init__(self, *sources: Iterable[Metric]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source


class Exporter:
    """What GET /metrics answers, made in a thread of its own: scrapes neither queue behind
    requests nor run side by side, and the database's gauges are counted at most once a second."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        self.processes: Collector = process_metrics()
        self._thread = anyio.CapacityLimiter(1)
        self._store: list[Metric] = []
        self._until = 0.0

    def _render(self, down: list[str]) -> bytes:
        if time.monotonic() >= self._until:
            try:
                self._store = store_metrics()
            except Exception:
                # The readiness gauge says the database is down; the process counters still count.
                log.warning("metrics: the database did not answer", exc_info=True)
                self._store = []
            self._until = time.monotonic() + 1.0
        ready = _gauge(
            "tinytrain_ready",
            "1 while the check answers, as /readyz finds it: database, queue.",
            "check",
            {check: float(check not in down) for check in ("database", "queue")},
        )
        return generate_latest(_Families(self.processes.collect(), [ready], self._store))

    async def render(self) -> bytes:
        down = await self.readiness.down()
        return await anyio.to_thread.run_sync(self._render, down, limiter=self._thread)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "Prometheus text format.", "content": {"text/plain": {}}},
        401: {"description": "TINYTRAIN_METRICS_TOKEN is set and the request does not carry it."},
    },
)
async def metrics(request: Request) -> Response:
    """The service in Prometheus text format: jobs and sweeps by status, queue depth and age,
    trainings and model-samples trained, request latency. No API key: behind its own bearer
    token when TINYTRAIN_METRICS_TOKEN is set."""
    token = get_settings().metrics_token
    if not authorized(request.headers.get("authorization"), token.get_secret_value() if token else None):
        return PlainTextResponse(
            "the metrics token is required: Authorization: Bearer <TINYTRAIN_METRICS_TOKEN>",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    exporter: Exporter = request.app.state.metrics
    return Response(await exporter.render(), media_type=TEXT_FORMAT)
