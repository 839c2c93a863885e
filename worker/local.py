"""The local executor: training processes owned by `serve`, so training never blocks a request.

Each process runs one run at a time. Serve hands a run to an idle process over that process's
pipe (runs wait in order while none is idle) and reads the answers on its event loop, so the
executor keeps no thread in serve to contend with the event loop for the GIL (as the manager
and feeder threads of a ProcessPoolExecutor would).
"""

import asyncio
import ctypes
import logging
import multiprocessing
import signal
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from threading import Lock

import model
from model.training import cuda_available
from worker.executor import OnEnd
from worker.run import run

log = logging.getLogger(__name__)

# spawn, not fork: serve has threads (and maybe CUDA) that a fork would copy half-alive.
_SPAWN = multiprocessing.get_context("spawn")


def _serve(conn: Connection) -> None:
    """A training process: warm up, say whether it has CUDA, then run each run id it is sent and
    answer (run id, the job's ended row or None, an error or None)."""
    # Linux kills the process when serve dies: it must not go on training an attempt that the
    # lease has handed to a new run. Ctrl-C in serve's terminal is serve's to handle.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    model.warm_up()
    conn.send(cuda_available())
    while True:
        try:
            run_id = conn.recv()
        except EOFError:  # serve closed the pipe
            return
        try:
            conn.send((run_id, run(run_id), None))
        except Exception as exc:  # run() handles its own errors: this is a claim that failed
            conn.send((run_id, None, repr(exc)))


@dataclass(eq=False)
class _Process:
    process: BaseProcess
    conn: Connection
    run_id: str | None = None  # the run it trains


class LocalExecutor:
    """Runs worker.run.run(run_id) in `processes` warmed-up processes."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = Lock()  # dispatch comes from request threads and the reaper
        self._all: list[_Process] = []
        self._idle: list[_Process] = []
        self._waiting: deque[str] = deque()
        self._has_cuda = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_end: OnEnd = lambda run_id, row: None

    def start(self, on_end: OnEnd) -> None:
        """On serve's event loop: start and warm up every process; learn whether they have CUDA."""
        self._on_end, self._loop = on_end, asyncio.get_running_loop()
        started = [self._spawn() for _ in range(self.processes)]
        cuda = [p.conn.recv() for p in started]  # every one's: each is warmed up once it answers
        self._has_cuda = all(cuda)
        for p in started:
            self._loop.add_reader(p.conn.fileno(), self._answer, p)
            with self._lock:
                self._next(p)

    def _spawn(self) -> _Process:
        ours, theirs = _SPAWN.Pipe()
        process = _SPAWN.Process(target=_serve, args=(theirs,), name="tinytrain-local", daemon=True)
        process.start()
        theirs.close()
        p = _Process(process, ours)
        self._all = [*self._all, p]  # a new list: ready() reads it from another thread
        return p

    def has_cuda(self) -> bool:
        return self._has_cuda

    def dispatch(self, run_id: str, queue: str) -> None:
        """Run the job or chunk soon (the queue only matters to Celery); the row reports the outcome."""
        with self._lock:
            if self._idle:
                self._send(self._idle.pop(), run_id)
            else:
                self._waiting.append(run_id)

    def _send(self, p: _Process, run_id: str) -> None:
        try:
            p.conn.send(run_id)
            p.run_id = run_id
        except OSError:  # died meanwhile: its reader finds out and starts another
            self._waiting.appendleft(run_id)

    def _next(self, p: _Process) -> None:
        """Under the lock: p is free; give it the next waiting run, or keep it idle."""
        if self._waiting:
            self._send(p, self._waiting.popleft())
        else:
            self._idle.append(p)

    def _answer(self, p: _Process) -> None:
        """On the event loop, when p's pipe can be read: a run's end, or p's death."""
        try:
            run_id, row, error = p.conn.recv()
        except (EOFError, OSError):
            self._replace(p)
            return
        if error is not None:
            log.warning("run %s did not run in the local pool: %s; the reaper will send it again", run_id, error)
        with self._lock:
            p.run_id = None
            self._next(p)
        self._on_end(run_id, row)

    def _replace(self, p: _Process) -> None:
        """p died (killed, out of memory): start another. The run it trained is not lost: its
        lease expires and the reaper sends it again; the waiting runs wait for the others."""
        assert self._loop is not None
        self._loop.remove_reader(p.conn.fileno())
        p.conn.close()
        with self._lock:
            if p in self._idle:
                self._idle.remove(p)
        self._all = [q for q in self._all if q is not p]
        new = self._spawn()  # which reaps the dead one (multiprocessing's start does), so its exit code is known
        log.error(
            "a local worker process died (exit code %s) training %s; starting another", p.process.exitcode, p.run_id
        )
        self._loop.add_reader(new.conn.fileno(), self._warmed, new)

    def _warmed(self, p: _Process) -> None:
        """On the event loop: a replacement's first word, once warmed up (or its death)."""
        assert self._loop is not None
        try:
            p.conn.recv()
        except (EOFError, OSError):
            self._replace(p)
            return
        self._loop.remove_reader(p.conn.fileno())
        self._loop.add_reader(p.conn.fileno(), self._answer, p)
        with self._lock:
            self._next(p)

    def ready(self) -> bool:
        """True while every process is alive: no round trip, which a busy process would hold up."""
        return all(p.process.is_alive() for p in self._all)

    def shutdown(self) -> None:
        for p in self._all:
            if self._loop is not None:
                self._loop.remove_reader(p.conn.fileno())
            p.process.terminate()
            p.conn.close()
