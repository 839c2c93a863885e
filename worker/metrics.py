"""The counters that runs increment (trainings ended, model-samples trained), and how a process
shows them to Prometheus (docs/metrics.md).

They must add up over every process that trains: `serve`'s HTTP processes and its local pool's
are separate processes, so `tinytrain serve` sets PROMETHEUS_MULTIPROC_DIR before any of them
starts; each then writes its counts to files of its own there, and a scrape of any one of them
sums every file. A Celery worker is one process (its pool is threads): it keeps its counts in
memory and serves them on a port of its own (serve_metrics).

prometheus_client decides once, when it is first imported, whether it writes files: the
directory must be in the environment before then."""

import collections
import hmac
import os
import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import REGISTRY, CollectorRegistry, Counter, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from model.fleet import Fleet

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Labels are bounded sets (kinds, statuses, error codes): never an owner, a key or an id.
TRAININGS = Counter(
    "tinytrain_trainings",
    "Trainings that ended, as recorded: jobs, and each trial of a sweep, by outcome (status) and error code.",
    ["kind", "outcome", "error_code"],
)
MODEL_SAMPLES = Counter(
    "tinytrain_model_samples",
    "Training points times epochs trained, summed over trials; counted as runs progress, by every attempt.",
    ["kind"],
)
# Shown at 0 before their first count: a series that appears at 1 has no increase to rate.
for _kind in ("job", "sweep"):
    MODEL_SAMPLES.labels(_kind)
for _kind in ("job", "trial"):
    for _outcome, _code in [("succeeded", ""), ("cancelled", ""), ("failed", "internal"), ("failed", "diverged")]:
        TRAININGS.labels(_kind, _outcome, _code)


Outcome = tuple[str, str | None]  # a training's status and error code


def ended(kind: str, outcomes: Iterable[Outcome]) -> None:
    """Count trainings of kind ("job", "trial") that ended: one (status, error code) each."""
    for (outcome, error_code), count in collections.Counter(outcomes).items():
        TRAININGS.labels(kind, outcome, error_code or "").inc(count)


class SampleCount:
    """Counts a run's model-samples as it goes, each engine call adding what it trained: a run of
    hours shows as a steady rate, not one jump at its end."""

    def __init__(self, kind: str) -> None:
        self.samples = MODEL_SAMPLES.labels(kind)
        self.counted = 0

    def update(self, fleet: Fleet) -> None:
        trained = int(fleet.epochs_completed().sum()) * int(fleet.x.shape[0])
        if trained > self.counted:
            self.samples.inc(trained - self.counted)
            self.counted = trained


def process_metrics() -> Collector:
    """This process's metrics: the sum of every process's files where there is a multiprocess
    directory, else its own registry."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # it ships no annotations
        return registry
    return REGISTRY


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the metrics token; anything does without a token."""
    if not token:
        return True
    scheme, _, presented = (header or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
    )


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds would drown the worker's log


def serve_metrics(host: str, port: int, token: str | None) -> None:
    """Serve this process's metrics over HTTP on host:port (GET, any path) from a daemon thread;
    behind the bearer token when one is given. Raises OSError now if the port is taken."""
    exposition = make_wsgi_app(process_metrics())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"the metrics token is required: Authorization: Bearer <TINYTRAIN_METRICS_TOKEN>\n"]
        body: Iterable[bytes] = exposition(environ, start_response)
        return body

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="tinytrain-metrics", daemon=True).start()
