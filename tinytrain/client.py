"""A Python client of the tinytrain HTTP API (docs/client.md).

    from tinytrain.client import Client

    with Client("http://127.0.0.1:8000", key) as client:
        job = client.submit(x=[-2, -1, 0, 1, 2], y=[-0.9, -0.8, 0, 0.8, 0.9], epochs=200, batch_size=2)
        job = client.wait(job.id)
        print(client.result(job.id).parameters)

Answers are the API's own pydantic models (tinytrain/wire.py, which the service answers with),
so client and server read one definition; nothing here needs the service's packages.

Every request is retried, a bounded number of times with exponential backoff, when the server
answers 429 with Retry-After, 502, 503 or 504 (waiting what Retry-After says), or cannot be
reached; creating requests carry an Idempotency-Key, one per call, reused by its retries, so a
retried POST whose answer was lost creates nothing twice. Any other error answer raises ApiError
(status and the server's detail); a server still unreachable after the retries raises Unreachable.
"""

import email.utils
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
import pydantic
from httpx_sse import EventSource, SSEError
from pydantic import BaseModel

from tinytrain.wire import (
    ACTIVE,
    Dataset,
    Halving,
    Hyperparameters,
    Job,
    JobProgressEvent,
    JobSummary,
    ModelFormat,
    Page,
    PredictOut,
    Result,
    Status,
    Sweep,
    SweepProgressEvent,
    SweepSummary,
    Trial,
    TrialWithResult,
    Webhook,
    WebhookAttemptOut,
    WebhookDeliveryOut,
    WebhookEvent,
    WebhookWithSecret,
)

__all__ = [
    "ApiError",
    "Client",
    "ClientError",
    "Dataset",
    "Halving",
    "Job",
    "JobProgressEvent",
    "JobSummary",
    "Page",
    "Result",
    "Status",
    "Sweep",
    "SweepProgressEvent",
    "SweepSummary",
    "Trial",
    "TrialWithResult",
    "Unreachable",
    "WaitTimeout",
]

log = logging.getLogger("tinytrain.client")
log.addHandler(logging.NullHandler())  # a library says nothing unless its user configures logging

Model = TypeVar("Model", bound=BaseModel)
Run = TypeVar("Run", Job, Sweep)
Summary = TypeVar("Summary", JobSummary, SweepSummary)
Progress = TypeVar("Progress", JobProgressEvent, SweepProgressEvent)

RETRIED_STATUSES = (429, 502, 503, 504)  # 502 and 504: a proxy in front of a serve that restarts
# Failures after which the request may be sent again: the server was not reached, or its answer
# was lost (then the Idempotency-Key, or the request being a read, makes a second try harmless).
RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is waited this long, then asked again
MAX_WAIT = 60  # the longest `Prefer: wait=N` the API accepts


class ClientError(Exception):
    """Anything the client raises about the service: the base of ApiError, Unreachable and WaitTimeout."""


class ApiError(ClientError):
    """The server answered with an error status (4xx, or a 5xx that lasted through the retries).

    status: the HTTP status; detail: the server's `detail` as it sent it (a string, or for 422 a
    list of {loc, msg, type}); str(error) is one line with both."""

    def __init__(self, status: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status, self.detail, self.method, self.path = status, detail, method, path
        super().__init__(f"{describe(detail)} (HTTP {status})")

    @classmethod
    def of(cls, response: httpx.Response) -> "ApiError":
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):  # not JSON, or JSON without a detail (a proxy's page)
            detail = response.text.strip() or response.reason_phrase
        return cls(response.status_code, detail, response.request.method, response.request.url.path)


class Unreachable(ClientError):
    """The server could not be reached (or kept dropping the connection) through every retry."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"cannot reach {url}: {reason}")


class WaitTimeout(ClientError, TimeoutError):
    """wait() ran out of time before the job (or sweep) ended; .run is how it was last seen."""

    def __init__(self, run: Job | Sweep, timeout: float) -> None:
        self.run = run
        super().__init__(f"{run.id} is still {run.status} after {timeout:g} s")


def describe(detail: Any) -> str:
    """A server's detail as one line: a 422's list as `field: message; ...`."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if not isinstance(error, dict):
                parts.append(str(error))
                continue
            loc = [str(p) for p in error.get("loc", []) if p != "body"]
            msg = str(error.get("msg", error)).removeprefix("Value error, ")
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        text = "; ".join(parts)
    else:
        text = str(detail)
    return " ".join(text.split())[:1000]  # one line, whatever the server sent


def _path(*parts: str | int) -> str:
    # An id is the caller's text: quoted, a '/' or '?' in it cannot reach another route.
    return "/v1/" + "/".join(quote(str(p), safe="") for p in parts)


def _floats(values: Sequence[float] | Any) -> list[float]:
    return [float(v) for v in values]  # numpy arrays and ints too


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None without a usable one."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Kind(Generic[Run, Summary, Progress]):
    """What jobs and sweeps differ in on the wire: where they are, and the types of their answers."""

    path: str
    run: type[Run]
    page: type[Page[Summary]]
    progress: type[Progress]
    resume: bool  # whether a dropped stream of events resumes after its last one (Last-Event-ID)


JOBS = _Kind("jobs", Job, Page[JobSummary], JobProgressEvent, resume=True)
SWEEPS = _Kind("sweeps", Sweep, Page[SweepSummary], SweepProgressEvent, resume=False)


class Client:
    """The tinytrain API at url with an API key: Client("http://127.0.0.1:8000", "tt_...").

    retries: how many times a request is sent again after a 429 with Retry-After, a 502/503/504
    or a connection failure (0: never); backoff: the first pause in seconds, doubled each time up
    to 10 s, unless Retry-After says how long. timeout: seconds of the connect and of each read."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if "://" not in url:
            url = f"http://{url}"
        self.url = url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        headers = {"User-Agent": "tinytrain-client/0.1", "Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # The transport: retries, errors, typed answers.

    def _pause(self, attempt: int) -> float:
        """The backoff before try attempt + 1, with jitter so that many clients spread out."""
        return float(min(10.0, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
        done_if_lost: int | None = None,
    ) -> httpx.Response:
        """The answer to one request, after the retries; ApiError for an error status, Unreachable
        when every try failed to connect or lost its answer. With stream, the caller closes it.
        done_if_lost: the status that, after a try whose answer was lost, means that try did it
        (a DELETE retried finds 404, a cancel 409)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        lost = False  # a try may have reached the server and done its work
        while True:
            attempt += 1
            request = self._http.build_request(
                method,
                path,
                params=query,
                json=json,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=stream)
            except RETRIED_ERRORS as exc:
                reason = str(exc) or type(exc).__name__
                lost = lost or not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt > self.retries:
                    tries = f" ({attempt} tries)" if attempt > 1 else ""
                    raise Unreachable(self.url, f"{reason}{tries}") from exc
                pause = self._pause(attempt)
                log.info("%s %s: %s; retrying in %.2f s", method, path, reason, pause)
                time.sleep(pause)
                continue
            except httpx.HTTPError as exc:  # a bad URL or header: sending it again changes nothing
                raise ClientError(f"{method} {self.url}{path}: {exc}") from exc
            status = response.status_code
            if status < 400 or (lost and status == done_if_lost):
                return response
            if stream:
                response.read()
                response.close()
            wait = _retry_after(response)
            # A 429 without Retry-After is a quota (active jobs, storage): waiting seconds won't lift it.
            if status in RETRIED_STATUSES and not (status == 429 and wait is None) and attempt <= self.retries:
                pause = min(wait, MAX_RETRY_AFTER) if wait is not None else self._pause(attempt)
                log.info("%s %s: HTTP %d; retrying in %.2f s", method, path, status, pause)
                time.sleep(pause)
                continue
            raise ApiError.of(response)

    def _json(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return _parsed(model, self._send(method, path, **kwargs))

    # Datasets.

    def upload_dataset(
        self,
        x: Sequence[float] | None = None,
        y: Sequence[float] | None = None,
        *,
        csv: str | Path | None = None,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Store points: x and y (with an optional name), or a CSV file (x,y per line, optional
        header row). A retry of this call stores them once."""
        key = idempotency_key or str(uuid.uuid4())
        if csv is not None:
            if x is not None or y is not None or name is not None:
                raise ValueError("give either csv or x and y (and a name)")
            body = Path(csv).read_bytes()
            headers = {"Content-Type": "text/csv", "Idempotency-Key": key}
            return self._json(Dataset, "POST", "/v1/datasets", content=body, headers=headers)
        if x is None or y is None:
            raise ValueError("give x and y, or csv")
        points: dict[str, Any] = {"x": _floats(x), "y": _floats(y)}
        if name is not None:
            points["name"] = name
        return self._json(Dataset, "POST", "/v1/datasets", json=points, headers={"Idempotency-Key": key})

    def upload_csv_once(self, csv: str | Path) -> Dataset:
        """The dataset of a CSV file, uploaded on its first use and the same one after that: its
        Idempotency-Key is the file's hash, so the same bytes name the dataset already stored
        (until it is deleted)."""
        body = Path(csv).read_bytes()
        return self.upload_dataset(csv=csv, idempotency_key=f"csv-sha256-{hashlib.sha256(body).hexdigest()}")

    def get_dataset(self, dataset_id: str) -> Dataset:
        return self._json(Dataset, "GET", _path("datasets", dataset_id))

    def list_datasets(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Dataset]:
        """One page of the owner's datasets, newest first; next_cursor asks for the next."""
        return self._json(Page[Dataset], "GET", "/v1/datasets", params={"limit": limit, "cursor": cursor})

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset; ApiError 409 while a queued or running job uses it."""
        self._send("DELETE", _path("datasets", dataset_id), done_if_lost=404)

    # Jobs.

    def submit(
        self,
        dataset_id: str | Dataset | None = None,
        *,
        x: Sequence[float] | None = None,
        y: Sequence[float] | None = None,
        hyperparameters: Mapping[str, Any] | Hyperparameters | None = None,
        max_runtime_seconds: float | None = None,
        name: str | None = None,
        **hyperparameter: Any,
    ) -> Job:
        """Queue a training job on a stored dataset (its id, or the Dataset) or on points sent
        inline (x and y). Hyperparameters as a dict, a Hyperparameters, or keywords
        (epochs=200); the ones left out take the service's defaults."""
        body = _run_body(dataset_id, x, y, hyperparameters, hyperparameter, max_runtime_seconds, name)
        return self._create(JOBS, body)

    def get(self, job_id: str) -> Job:
        """The job: status, progress, error and its result's scalars (parameters, final loss)."""
        return self._get(JOBS, job_id)

    def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[JobSummary]:
        """One page of the owner's jobs, newest first (only those in status, if given)."""
        return self._list(JOBS, status, limit, cursor)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has ended (succeeded, failed or cancelled); WaitTimeout after timeout
        seconds (None: no limit). Each request asks the server to hold its answer until the job
        ends (Prefer: wait); a server that answers at once is asked again after a pause."""
        return self._wait(JOBS, job_id, timeout)

    def events(self, job_id: str) -> Iterator[JobProgressEvent | Job]:
        """The job's live events: JobProgressEvent for new loss-history entries, and the Job
        whenever its status changes; ends after the terminal status. The history so far comes
        first. A dropped connection is resumed where it stopped (Last-Event-ID): concatenated,
        the events' loss lists are the whole history, with no gap and no repeat."""
        return self._run_events(JOBS, job_id)

    def result(
        self, job_id: str, *, start: int | None = None, stop: int | None = None, max_points: int | None = None
    ) -> Result:
        """The parameters and loss histories of a succeeded job (ApiError 409 otherwise): whole,
        the epochs [start, stop), or at most max_points evenly spaced (then .epochs says which)."""
        params = {"start": start, "stop": stop, "max_points": max_points}
        return self._json(Result, "GET", _path("jobs", job_id, "result"), params=params)

    def predict(self, job_id: str, x: Sequence[float]) -> list[float | None]:
        """The trained network's output for each x (None where it overflows a float)."""
        return self._json(PredictOut, "POST", _path("jobs", job_id, "predict"), json={"x": _floats(x)}).y

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one never starts, a running one stops within a second and keeps
        its partial result. ApiError 409 if it had already ended."""
        return self._cancel(JOBS, job_id)

    def delete(self, job_id: str) -> None:
        """Delete an ended job with its result (and its dataset, if sent inline and unused)."""
        self._delete(JOBS, job_id)

    # Sweeps.

    def sweep(
        self,
        dataset_id: str | Dataset | None = None,
        *,
        x: Sequence[float] | None = None,
        y: Sequence[float] | None = None,
        hyperparameters: Mapping[str, Any] | Hyperparameters | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None,
        random: Mapping[str, Any] | None = None,
        objective: str | None = None,
        halving: Mapping[str, int] | Halving | None = None,
        max_runtime_seconds: float | None = None,
        name: str | None = None,
        search: Mapping[str, Any] | None = None,
    ) -> Sweep:
        """Queue a sweep: every combination of grid (or random draws, or a search's trials:
        {"sampler": "tpe", "trials", "seed", "batch", ranges as random's}) of hyperparameters
        over the base hyperparameters, on one dataset (stored, or x and y inline). With halving
        ({"min_epochs", "reduction_factor", "brackets"}), successive halving prunes the trials
        that fall behind at each rung."""
        body = _run_body(dataset_id, x, y, hyperparameters, {}, max_runtime_seconds, name)
        if grid is not None:
            body["grid"] = {k: list(v) for k, v in grid.items()}
        if random is not None:
            body["random"] = dict(random)
        if search is not None:
            body["search"] = dict(search)
        if objective is not None:
            body["objective"] = objective
        if halving is not None:
            body["halving"] = halving.model_dump() if isinstance(halving, Halving) else dict(halving)
        return self._create(SWEEPS, body)

    def get_sweep(self, sweep_id: str) -> Sweep:
        """The sweep: status, trial counts, summed progress and the best trial so far."""
        return self._get(SWEEPS, sweep_id)

    def list_sweeps(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[SweepSummary]:
        """One page of the owner's sweeps, newest first (only those in status, if given), without
        their counts, progress or best trial (get_sweep has them)."""
        return self._list(SWEEPS, status, limit, cursor)

    def wait_sweep(self, sweep_id: str, timeout: float | None = None) -> Sweep:
        """The sweep once it has ended; WaitTimeout after timeout seconds."""
        return self._wait(SWEEPS, sweep_id, timeout)

    def sweep_events(self, sweep_id: str) -> Iterator[SweepProgressEvent | Sweep]:
        """The sweep's live events: SweepProgressEvent as trials and epochs advance, and the
        Sweep whenever its status changes; ends after the terminal status."""
        return self._run_events(SWEEPS, sweep_id)

    def trials(
        self,
        sweep_id: str,
        *,
        order_by: Literal["objective", "index"] = "index",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Trial]:
        """One page of the sweep's trials without histories: by index, or best objective first."""
        params = {"order_by": order_by, "limit": limit, "cursor": cursor}
        return self._json(Page[Trial], "GET", _path("sweeps", sweep_id, "trials"), params=params)

    def all_trials(self, sweep_id: str, *, order_by: Literal["objective", "index"] = "index") -> Iterator[Trial]:
        """Every trial of the sweep, page after page."""
        cursor = None
        while True:
            page = self.trials(sweep_id, order_by=order_by, limit=100, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def trial(
        self,
        sweep_id: str,
        index: int,
        *,
        start: int | None = None,
        stop: int | None = None,
        max_points: int | None = None,
    ) -> TrialWithResult:
        """One trial with its whole result (histories sliced as a job's result)."""
        params = {"start": start, "stop": stop, "max_points": max_points}
        return self._json(TrialWithResult, "GET", _path("sweeps", sweep_id, "trials", index), params=params)

    def predict_trial(self, sweep_id: str, index: int, x: Sequence[float]) -> list[float | None]:
        path = _path("sweeps", sweep_id, "trials", index, "predict")
        return self._json(PredictOut, "POST", path, json={"x": _floats(x)}).y

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        """Cancel a sweep: its queued trials never start, its running ones stop within a second.
        ApiError 409 if it had already ended."""
        return self._cancel(SWEEPS, sweep_id)

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete an ended sweep with its trials and their results."""
        self._delete(SWEEPS, sweep_id)

    # Models.

    def export(self, run_id: str, format: ModelFormat = "onnx", *, trial: int | None = None) -> bytes:
        """A trained network as a file: `onnx`, `pt2` (for torch.export.load) or `json`. run_id
        is a job's, or with trial a sweep's (that trial's network). ApiError 409 until it has a result."""
        where = ("jobs", run_id) if trial is None else ("sweeps", run_id, "trials", trial)
        return self._send("GET", _path(*where, "model"), params={"format": format}).content

    # Webhooks.

    def create_webhook(
        self, url: str, events: Sequence[WebhookEvent], *, description: str | None = None
    ) -> WebhookWithSecret:
        """A new endpoint for these events; its signing secret is in this answer only."""
        body = {"url": url, "events": list(events), "description": description}
        return self._json(WebhookWithSecret, "POST", _path("webhooks"), json=body)

    def list_webhooks(self) -> list[Webhook]:
        return self._json(Page[Webhook], "GET", _path("webhooks")).items

    def get_webhook(self, webhook_id: str) -> Webhook:
        return self._json(Webhook, "GET", _path("webhooks", webhook_id))

    def delete_webhook(self, webhook_id: str) -> None:
        self._send("DELETE", _path("webhooks", webhook_id), done_if_lost=404)

    def rotate_webhook_secret(self, webhook_id: str) -> WebhookWithSecret:
        return self._json(WebhookWithSecret, "POST", _path("webhooks", webhook_id, "rotate-secret"))

    def test_webhook(self, webhook_id: str) -> WebhookDeliveryOut:
        """Send the endpoint a `ping` event."""
        return self._json(WebhookDeliveryOut, "POST", _path("webhooks", webhook_id, "test"))

    def webhook_deliveries(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[WebhookAttemptOut]:
        """Each try of each delivery to the endpoint, newest first."""
        params = {"limit": limit, "cursor": cursor}
        return self._json(Page[WebhookAttemptOut], "GET", _path("webhooks", webhook_id, "deliveries"), params=params)

    def retry_webhook_delivery(self, webhook_id: str, delivery_id: str) -> WebhookDeliveryOut:
        """Send a delivery again now, with its webhook-id."""
        path = _path("webhooks", webhook_id, "deliveries", delivery_id, "retry")
        return self._json(WebhookDeliveryOut, "POST", path)

    # Jobs and sweeps alike.

    def _create(self, kind: _Kind[Run, Any, Any], body: dict[str, Any]) -> Run:
        key = str(uuid.uuid4())  # one per call, so that its retries are recognised as one request
        return self._json(kind.run, "POST", _path(kind.path), json=body, headers={"Idempotency-Key": key})

    def _get(self, kind: _Kind[Run, Any, Any], run_id: str) -> Run:
        return self._json(kind.run, "GET", _path(kind.path, run_id))

    def _list(
        self, kind: _Kind[Any, Summary, Any], status: str | None, limit: int | None, cursor: str | None
    ) -> Page[Summary]:
        params = {"status": status, "limit": limit, "cursor": cursor}
        return self._json(kind.page, "GET", _path(kind.path), params=params)

    def _cancel(self, kind: _Kind[Run, Any, Any], run_id: str) -> Run:
        response = self._send("POST", _path(kind.path, run_id, "cancel"), done_if_lost=409)
        if response.status_code == 409:  # the try whose answer was lost cancelled it
            return self._get(kind, run_id)
        return _parsed(kind.run, response)

    def _delete(self, kind: _Kind[Any, Any, Any], run_id: str) -> None:
        self._send("DELETE", _path(kind.path, run_id), done_if_lost=404)

    def _run_events(self, kind: _Kind[Run, Any, Progress], run_id: str) -> Iterator[Progress | Run]:
        for event, data in self._events(_path(kind.path, run_id, "events"), resume=kind.resume):
            if event == "progress":
                yield _parsed_json(kind.progress, data)
            else:
                yield _parsed_json(kind.run, data)

    def _wait(self, kind: _Kind[Run, Any, Any], run_id: str, timeout: float | None) -> Run:
        path = _path(kind.path, run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.1
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            seconds = MAX_WAIT if left is None else max(0, min(MAX_WAIT, int(left)))
            headers = {"Prefer": f"wait={seconds}"} if seconds else None
            asked = time.monotonic()
            # The server may hold the answer `seconds`: the read must outlast that.
            run = self._json(kind.run, "GET", path, headers=headers, timeout=seconds + 30.0)
            if run.status not in ACTIVE:
                return run
            now = time.monotonic()
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                raise WaitTimeout(run, timeout or 0.0)
            if now - asked < seconds / 2 or not seconds:
                # Answered without holding (a server that ignores Prefer: wait, or one stopping,
                # or under a second left): ask again after a pause, not in a tight loop.
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 1.5, 2.0)

    @contextmanager
    def _stream(self, path: str, last_event_id: str | None) -> Iterator[EventSource]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        # The server pings an idle stream every few seconds: a minute without a byte is a dead connection.
        response = self._send("GET", path, headers=headers, timeout=60.0, stream=True)
        try:
            yield EventSource(response)
        finally:
            response.close()

    def _events(self, path: str, *, resume: bool) -> Iterator[tuple[str, str]]:
        """(event, data) of the stream at path until its terminal status, reconnecting (from
        the last progress event's id with resume) when the connection drops or the stream ends
        early (a serve that stops ends its streams); a repeated status is not repeated."""
        last_id: str | None = None
        status: str | None = None
        failures = 0
        while True:
            try:
                with self._stream(path, last_id if resume else None) as source:
                    for event in source.iter_sse():
                        failures = 0
                        if event.event == "progress":
                            last_id = event.id or last_id
                            yield "progress", event.data
                        elif event.event == "status":
                            now = _parsed_json(_Status, event.data).status
                            if now != status:
                                status = now
                                yield "status", event.data
                            if now not in ACTIVE:
                                return
                reason = "the stream ended before the run did"
            except (*RETRIED_ERRORS, SSEError) as exc:
                reason = str(exc) or type(exc).__name__
            failures += 1
            if failures > self.retries:
                raise Unreachable(self.url, f"{path}: {reason} ({failures} tries)")
            pause = self._pause(failures)
            log.info("GET %s: %s; resuming after epoch %s in %.2f s", path, reason, last_id or 0, pause)
            time.sleep(pause)


class _Status(BaseModel):
    status: Status


def _run_body(
    dataset_id: str | Dataset | None,
    x: Sequence[float] | None,
    y: Sequence[float] | None,
    hyperparameters: Mapping[str, Any] | Hyperparameters | None,
    more: Mapping[str, Any],
    max_runtime_seconds: float | None,
    name: str | None,
) -> dict[str, Any]:
    """The body of a job or sweep: what the caller gave, for the server to check (and default)."""
    if (dataset_id is None) == (x is None and y is None):
        raise ValueError("give a dataset_id, or x and y")
    body: dict[str, Any] = {}
    if dataset_id is not None:
        body["dataset_id"] = dataset_id.id if isinstance(dataset_id, Dataset) else dataset_id
    else:
        if x is None or y is None:
            raise ValueError("give both x and y")
        body["dataset"] = {"x": _floats(x), "y": _floats(y)}
    if isinstance(hyperparameters, Hyperparameters):
        hyperparameters = hyperparameters.model_dump(mode="json", exclude_unset=True)
    hp = {**(hyperparameters or {}), **more}
    if hp:
        body["hyperparameters"] = hp
    if max_runtime_seconds is not None:
        body["max_runtime_seconds"] = max_runtime_seconds
    if name is not None:
        body["name"] = name
    return body


def _parsed(model: type[Model], response: httpx.Response) -> Model:
    return _parsed_json(model, response.content, f"{response.request.method} {response.request.url.path}")


def _parsed_json(model: type[Model], data: str | bytes, what: str = "an event") -> Model:
    try:
        return model.model_validate_json(data)
    except pydantic.ValidationError as exc:
        # A server of another version than this client: say so in one line, not a traceback.
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ClientError(f"unexpected answer to {what}: {where}: {first['msg']}") from exc
