"""What live event streams and waiting requests share in one serve process: a Watcher that reads
the state of every followed job and sweep in one query a few times a second, and wakes the
streams and requests whose run changed.

A stream then reads only what is new, through the watcher's reads of this tick, which streams
asking the same (the next entries of one job's history) share. So a stream costs no query per
epoch, and a hundred streams of one job cost the database about what one does. Any serve process
can stream any run: everything comes from the database, which the workers write as they train.
The executor pokes the watcher when a run ends (a local training process's answer, Celery's
workers through Redis), so a request waiting for a job that takes milliseconds is answered in milliseconds.
"""

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
from fastapi import HTTPException
from sqlalchemy import case, func, select

from api.deps import short_read
from jobs import keys
from jobs.db import new_session
from jobs.status import ACTIVE
from jobs.tables import Job, Sweep, SweepChunk

T = TypeVar("T")
MAX_WAIT = 60  # seconds a request may ask to wait (Prefer: wait)
ANSWER_MARGIN = 0.2  # seconds before a wait's end at which its answer is read and sent
RECENT_ENDS = 256  # ended runs a serve remembers (a row each)
KEY_CHECK = 1.0  # seconds between checks that the keys of the open streams are valid
State = tuple[Any, ...]  # of a job: (status, epochs completed); of a sweep: (status, epochs, chunks ended)


def _states(ids: list[str]) -> dict[str, State]:
    jobs = [i for i in ids if i.startswith("job_")]
    sweeps = [i for i in ids if i.startswith("sw_")]
    with new_session() as session:
        found: dict[str, State] = {}
        if jobs:
            rows = session.execute(select(Job.id, Job.status, Job.epochs_completed).where(Job.id.in_(jobs)))
            found |= {run_id: tuple(rest) for run_id, *rest in rows}
        if sweeps:
            ended = func.sum(case((SweepChunk.status.in_(ACTIVE), 0), else_=1))
            rows = session.execute(
                select(Sweep.id, Sweep.status, func.sum(SweepChunk.epochs_completed), ended)
                .join(SweepChunk, SweepChunk.sweep_id == Sweep.id)
                .where(Sweep.id.in_(sweeps))
                .group_by(Sweep.id, Sweep.status)
            )
            found |= {run_id: tuple(rest) for run_id, *rest in rows}
        return found


def _valid_keys(digests: list[str]) -> set[str]:
    with new_session() as session:
        return keys.valid(session=session, digests=digests)


class PerOwner:
    """How many of something (open streams, waiting requests) each owner holds in this process,
    at most limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def take(self, owner: str) -> bool:
        """One more for owner, unless they hold limit already (False)."""
        if self._held[owner] >= self.limit:
            return False
        self._held[owner] += 1
        return True

    def give_back(self, owner: str) -> None:
        self._held[owner] -= 1
        if not self._held[owner]:
            del self._held[owner]


class Paced:
    """Bytes per second each owner's event streams may send in this process, a second's worth at
    once: what they send costs the event loop (writing a stream's bytes is most of its work), so
    one owner replaying long histories on many streams takes a bounded share of it."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._free_at: dict[str, float] = {}  # owner: when their streams have sent what they were given

    async def take(self, owner: str, size: int) -> None:
        """Wait until owner's streams may send size bytes more."""
        now = asyncio.get_running_loop().time()
        start = max(self._free_at.get(owner, now), now - 1.0)  # unused time is kept for a second at most
        self._free_at[owner] = start + size / self.per_second
        if start > now:
            await asyncio.sleep(start - now)


class Watcher:
    """Polls the followed runs every interval seconds while any stream follows one; and every
    KEY_CHECK seconds, whether the keys of the open streams are still valid."""

    def __init__(self, interval: float, max_streams: int, max_waiting: int, stream_bytes: int) -> None:
        self.interval = interval
        self.streams = PerOwner(max_streams)
        self.sent = Paced(stream_bytes)
        self.waiting = PerOwner(max_waiting)
        self._keys: dict[str, set[anyio.Event]] = {}  # a key's digest: the ends of its open streams
        self._keys_checked = 0.0
        self._following: dict[str, int] = {}  # run id: streams and waiting requests following it
        self._streams: dict[str, int] = {}  # run id: the streams among them
        self._states: dict[str, State] = {}
        self._tick = asyncio.Condition()
        self._reads: dict[Hashable, asyncio.Future[Any]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._ends: dict[str, asyncio.Event] = {}  # run id: set when the executor says it ended
        # The runs that ended lately, with the row the executor gave (or None): a request may
        # start to wait for a tiny job only after it ended.
        self._recent: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def follow(self, run_id: str, *, stream: bool = True) -> AsyncIterator[None]:
        """Keep run_id's state up to date for a stream, or (stream False) a request waiting for its end."""
        self._following[run_id] = self._following.get(run_id, 0) + 1
        if stream:
            self._streams[run_id] = self._streams.get(run_id, 0) + 1
        if run_id not in self._ends:
            self._ends[run_id] = asyncio.Event()
            if run_id in self._recent:
                self._ends[run_id].set()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(first=stream), name="tinytrain-watcher")
        try:
            yield
        finally:
            self._following[run_id] -= 1
            if not self._following[run_id]:
                del self._following[run_id], self._ends[run_id]
            if stream:
                self._streams[run_id] -= 1
                if not self._streams[run_id]:
                    del self._streams[run_id]

    @contextmanager
    def until_revoked(self, digest: str, end: anyio.Event) -> Iterator[None]:
        """Within: end is set within KEY_CHECK seconds (and a poll) of the key's revocation."""
        self._keys.setdefault(digest, set()).add(end)
        try:
            yield
        finally:
            self._keys[digest].discard(end)
            if not self._keys[digest]:
                del self._keys[digest]

    async def _check_keys(self) -> None:
        now = time.monotonic()
        if not self._keys or now - self._keys_checked < KEY_CHECK:
            return
        self._keys_checked = now
        digests = list(self._keys)  # a stream that opens while the query runs is checked next time
        valid = await short_read(_valid_keys, digests)
        for digest in digests:
            if digest not in valid:
                for end in self._keys.get(digest, ()):
                    end.set()

    def start(self) -> None:
        """On serve's event loop, before the executor starts: pokes come from then on."""
        self._loop = asyncio.get_running_loop()

    def state(self, run_id: str) -> State | None:
        """The run's state at the last tick (None before its first)."""
        return self._states.get(run_id)

    async def changed(self, run_id: str, seen: State | None) -> None:
        """Return once the run's state is other than seen (at the next tick at the earliest)."""
        async with self._tick:
            await self._tick.wait()
            # A run no longer there (deleted) counts as changed: its stream then finds it gone.
            await self._tick.wait_for(lambda: self._states.get(run_id) != seen)

    async def read(self, key: Hashable, fn: Callable[[], T]) -> T:
        """fn(), a database read; streams that ask for the same key within one tick share one read."""
        if key not in self._reads:
            self._reads[key] = asyncio.ensure_future(short_read(fn))
        result: T = await self._reads[key]
        return result

    def ended(self, run_id: str) -> asyncio.Event:
        """Set when the executor says the (followed) run ended, or a poll finds it ended: a
        request waiting for it then answers at once (see ended_row)."""
        return self._ends[run_id]

    def ended_row(self, run_id: str) -> dict[str, Any] | None:
        """The row the executor gave with the run's last end, else None."""
        return self._recent.get(run_id)

    def poke(self, run_id: str, row: dict[str, Any] | None = None) -> None:
        """From any thread: run_id ended (as row, where the executor has it); its waiting
        requests answer now, and a stream that follows it gets a poll now rather than at the
        next tick."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_poke, run_id, row)

    def _on_poke(self, run_id: str, row: dict[str, Any] | None) -> None:
        self._recent[run_id] = row
        self._recent.move_to_end(run_id)
        if len(self._recent) > RECENT_ENDS:
            self._recent.popitem(last=False)
        if run_id in self._streams:
            self._poked.set()
        if run_id in self._ends:
            self._ends[run_id].set()

    async def _poll(self, first: bool) -> None:
        """Poll at once if first, then every interval (or when poked) while any run is followed:
        an idle serve polls nothing. A request that starts waiting has just read its job (or
        submitted it): its first poll would find what it knows, and the executor's poke, not a
        poll, answers most of them."""
        while self._following:
            if first:
                self._poked.clear()
                states = await short_read(_states, list(self._following))
                async with self._tick:
                    self._states, self._reads = states, {}
                    self._tick.notify_all()
                for run_id, ended in self._ends.items():
                    if run_id in states and states[run_id][0] not in ACTIVE:
                        ended.set()  # a run the executor did not say ended (another serve's, Celery's lost word)
                await self._check_keys()
            first = True
            try:
                await asyncio.wait_for(self._poked.wait(), self.interval)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()


def wait_deadline(seconds: int) -> float:
    """The event loop's time by which a request that arrived now with `Prefer: wait=seconds` must
    have its answer on its way: a moment early, as the answer still has to be read and written."""
    return asyncio.get_running_loop().time() + max(0.0, seconds - ANSWER_MARGIN)


async def until_ended(watcher: Watcher, job_id: str, deadline: float, read: Callable[[], Awaitable[Job]]) -> Job:
    """The job once it has ended, or read() once the loop's time reached deadline, whichever is
    first. The waiting holds no thread, makes no query of its own (the watcher's poll covers
    every followed run) and no task: the executor (or the poll) says the job ended, and the row
    the executor handed back answers, or one read."""
    async with watcher.follow(job_id, stream=False):
        ended = watcher.ended(job_id)
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await ended.wait()
            except TimeoutError:
                return await read()
            row = watcher.ended_row(job_id)
            job = Job(**row) if row is not None else await read()
            if job.status not in ACTIVE:
                return job
            ended.clear()  # queued again (its worker was lost): wait on


def whole_number(text: str, most: int) -> int | None:
    """text as a number from 0 to most written in ASCII digits, else None.

    Not str.isdigit(), which is true of "²" and "٣" too: int() refuses the first, and a header
    arrives in latin-1, any byte a character."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(most)) or int(text) > most:
        return None
    return int(text)


def prefer_wait(prefer: str | None) -> int | None:
    """The seconds of a `Prefer: wait=N` header (RFC 7240; N from 0 to 60), None without one;
    HTTPException 400 for a wait that is not such a number."""
    if prefer is None:
        return None
    for preference in prefer.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            seconds = whole_number(value.strip().strip('"'), MAX_WAIT)
            if seconds is None:
                raise HTTPException(400, f"Prefer: wait must be a whole number of seconds from 0 to {MAX_WAIT}")
            return seconds
    return None
