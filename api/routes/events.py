"""Live events (Server-Sent Events): GET /v1/jobs/{id}/events and /v1/sweeps/{id}/events.

A job's stream sends `progress` events with the loss-history entries since the last one (its
id: the epochs sent so far, so Last-Event-ID resumes with no gap and no repeat) and a `status`
event with the Job whenever its status changes; it ends after the terminal one. A sweep's sends
its trial counts and epochs as `progress`, and the Sweep as `status`. sse-starlette runs the
stream: keep-alive pings, and the end of the stream when the client leaves or serve stops.
"""

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import undefer
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from api import schemas
from api.deps import Credentials, JobDep, SweepDep
from api.errors import error
from api.live import State, Watcher, whole_number
from api.routes.jobs import job_out
from api.routes.sweeps import sweep_out
from jobs import keys, results
from jobs.db import new_session
from jobs.status import ACTIVE
from jobs.tables import Job, Sweep

router = APIRouter(tags=["events"])

# The largest Last-Event-ID taken (a larger one is a 400): past any job's epochs.
LAST_EVENT_ID = 9_999_999_999
# History entries per progress event: a stream that starts at epoch 0 of a million-epoch job
# sends it in pieces that each encode in about a millisecond.
PIECE = 20_000

STREAM = {
    200: {
        # Each event as a parsed object: its event name, id and data (JSON text).
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": ["progress", "status"]},
                        "id": {"type": "string"},
                        "data": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
        "description": "Server-Sent Events: `progress` and `status`, ending after the terminal status.",
    },
    **error(400, "Last-Event-ID is not a number of epochs."),
    **error(429, "The owner has TINYTRAIN_MAX_STREAMS_PER_OWNER streams open, or the key is over its rate limit."),
}
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Resume after this many epochs (the id of the last progress event received); else a 400.",
    ),
]


def _epochs_sent(last_event_id: str | None, epochs: int) -> int:
    """The epochs a stream resumed after Last-Event-ID has sent (at most the job's epochs)."""
    if last_event_id is None:
        return 0
    sent = whole_number(last_event_id, LAST_EVENT_ID)
    if sent is None:
        raise HTTPException(400, "Last-Event-ID must be the id of a progress event: a number of epochs")
    return min(sent, epochs)


def _job(job_id: str) -> Job | None:
    with new_session() as session:
        return session.scalar(select(Job).options(undefer(Job.result)).where(Job.id == job_id))


def _progress(job_id: str, start: int, epochs: int) -> tuple[bytes, int]:
    """The progress event of the history entries from epoch start on (at most PIECE), encoded, and
    how many it holds (0: none yet). Encoded once for every stream at this point of this job."""
    with new_session() as session:
        _, loss, val = results.read_history(session, job_id, 0, start, start + PIECE, None)
        if not loss.size:
            return b"", 0
        # After the history: a beat writes the parameters with its epochs, so they are the ones
        # after this event's last epoch when the row's epochs end where the history read did
        # (not in an earlier piece of a long history, nor when a beat came between the reads).
        beat = session.execute(select(Job.epochs_completed, Job.last_parameters).where(Job.id == job_id)).first()
    end = start + loss.size
    data = schemas.JobProgressEvent(
        epochs_completed=end,
        epochs=epochs,
        start=start,
        loss=loss.tolist(),
        validation_loss=val.tolist() if val is not None else None,
        parameters=beat.last_parameters if beat is not None and beat.epochs_completed == end else None,
    )
    return _event("progress", data, str(end)).encode(), loss.size


class Frames:
    """The progress events of whole pieces of job histories, encoded once for every stream of
    this process: a whole piece never changes (a re-run after a lost worker trains the same
    epochs again). Encoded in a worker thread, one piece at a time, so that streams replaying a
    long history neither hold the event loop nor take every thread; the most recently used kept
    up to max_bytes. Streams that ask for the same piece at once wait for one encoding."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._encoding: dict[tuple[str, int], asyncio.Future[tuple[bytes, int]]] = {}
        self._limiter = anyio.CapacityLimiter(1)

    async def get(self, job_id: str, epochs: int, start: int) -> tuple[bytes, int]:
        """The progress event of job_id's entries from start on, and how many it holds (see _progress)."""
        key = (job_id, start)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key], PIECE
        if key not in self._encoding:
            self._encoding[key] = asyncio.ensure_future(self._encode(key, epochs))
        # Shielded: a stream whose client left does not cancel the encoding the others wait for.
        return await asyncio.shield(self._encoding[key])

    async def _encode(self, key: tuple[str, int], epochs: int) -> tuple[bytes, int]:
        try:
            frame, entries = await anyio.to_thread.run_sync(_progress, *key, epochs, limiter=self._limiter)
        finally:
            del self._encoding[key]
        if entries == PIECE:
            self._kept[key] = frame
            self._bytes += len(frame)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._kept.popitem(last=False)[1])
        return frame, entries


FRAMES = Frames(64 * 1024 * 1024)


def _sweep(sweep_id: str) -> schemas.Sweep | None:
    with new_session() as session:
        sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id))
        return sweep_out(session, sweep) if sweep is not None else None


def _event(event: str, data: BaseModel, event_id: str | None = None) -> ServerSentEvent:
    # pydantic encodes in Rust: a piece of history in about a millisecond, ten times json.dumps.
    return ServerSentEvent(data=data.model_dump_json(), event=event, id=event_id)


async def _next_change(watcher: Watcher, run_id: str, seen: State | None, stopping: anyio.Event) -> bool:
    """Wait until the run changes (True) or serve is stopping (False: the stream then ends, a
    clean end of the response, and a client resumes with Last-Event-ID elsewhere)."""
    async with anyio.create_task_group() as waiting:

        async def stop() -> None:
            await stopping.wait()
            waiting.cancel_scope.cancel()

        waiting.start_soon(stop)
        await watcher.changed(run_id, seen)
        waiting.cancel_scope.cancel()
    return not stopping.is_set()


async def _job_events(
    watcher: Watcher, stopping: anyio.Event, *, owner: str, job_id: str, sent: int
) -> AsyncIterator[Any]:
    status = None
    async with watcher.follow(job_id):
        while True:
            seen = watcher.state(job_id)
            job = await watcher.read(("job", job_id), lambda: _job(job_id))
            if job is None:  # deleted meanwhile
                return
            # After the job's row: a job read as ended has its whole history stored.
            while not stopping.is_set():
                frame, entries = await FRAMES.get(job_id, job.hyperparameters["epochs"], sent)
                if not entries:
                    break
                sent += entries
                await watcher.sent.take(owner, len(frame))
                yield frame
            if stopping.is_set():
                return
            if job.status != status:
                status = job.status
                yield _event("status", job_out(job))
            if job.status not in ACTIVE:
                return
            if not await _next_change(watcher, job_id, seen, stopping):
                return


async def _sweep_events(watcher: Watcher, stopping: anyio.Event, *, sweep_id: str) -> AsyncIterator[ServerSentEvent]:
    status, progress = None, None
    async with watcher.follow(sweep_id):
        while True:
            seen = watcher.state(sweep_id)
            sweep = await watcher.read(("sweep", sweep_id), lambda: _sweep(sweep_id))
            if sweep is None:
                return
            now = schemas.SweepProgressEvent(trials=sweep.trials, **sweep.progress.model_dump())
            if now != progress:
                progress = now
                yield _event("progress", now, str(sweep.progress.epochs_completed))
            if sweep.status != status:
                status = sweep.status
                yield _event("status", sweep)
            if sweep.status not in ACTIVE:
                return
            if not await _next_change(watcher, sweep_id, seen, stopping):
                return


class OwnedStream(EventSourceResponse):
    """An owner's event stream: it holds one of the owner's streams while it runs, and ends
    within seconds of its key's revocation (the watcher sets stopping, as serve's stop does)."""

    def __init__(
        self, events: AsyncIterator[Any], stopping: anyio.Event, watcher: Watcher, owner: str, digest: str
    ) -> None:
        # sse-starlette sets stopping when serve is told to stop, and waits a moment for the stream to end.
        super().__init__(events, shutdown_event=stopping, shutdown_grace_period=2)
        self.stopping, self.watcher, self.owner, self.digest = stopping, watcher, owner, digest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with self.watcher.until_revoked(self.digest, self.stopping):
                await super().__call__(scope, receive, send)
        finally:
            self.watcher.streams.give_back(self.owner)


def _stream(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    owner: str,
    events: Callable[[Watcher, anyio.Event], AsyncIterator[Any]],
) -> OwnedStream:
    """The owner's stream of events(watcher, stopping); 429 when the owner has as many open as they may."""
    watcher: Watcher = request.app.state.watcher
    assert credentials is not None  # the owned object was found with them
    if not watcher.streams.take(owner):
        limit = watcher.streams.limit
        raise HTTPException(429, f"{limit} open event streams is the limit per owner; close one first")
    stopping = anyio.Event()
    return OwnedStream(events(watcher, stopping), stopping, watcher, owner, keys.digest(credentials.credentials))


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse, responses=STREAM)
async def job_events(
    job: JobDep, request: Request, credentials: Credentials, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """The job's loss history as it grows and its status changes, as Server-Sent Events; a
    finished job's stream sends its history and final status, then ends."""
    sent = _epochs_sent(last_event_id, job.hyperparameters["epochs"])
    events = functools.partial(_job_events, owner=job.owner, job_id=job.id, sent=sent)
    return _stream(request, credentials, job.owner, events)


@router.get("/sweeps/{sweep_id}/events", response_class=EventSourceResponse, responses=STREAM)
async def sweep_events(sweep: SweepDep, request: Request, credentials: Credentials) -> EventSourceResponse:
    """The sweep's trial counts and epochs as they change, and its status, as Server-Sent Events."""
    return _stream(request, credentials, sweep.owner, functools.partial(_sweep_events, sweep_id=sweep.id))
