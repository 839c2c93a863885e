"""The local executor: a process pool owned by `serve`, so training never blocks a request."""

import ctypes
import functools
import logging
import multiprocessing
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from threading import Lock
from typing import Any

import model
from model.training import cuda_available
from worker.executor import OnEnd
from worker.run import run

log = logging.getLogger(__name__)


def _init_process() -> None:
    # Linux kills the process when serve dies: it must not go on training an attempt that the
    # lease has handed to a new run.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    model.warm_up()


class LocalExecutor:
    """Runs worker.run.run(run_id) in a pool of warmed-up processes."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = Lock()
        self._pool = self._new_pool()
        self._has_cuda = False
        self._on_end: OnEnd = lambda run_id, row: None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: serve has threads (and maybe CUDA) that a fork would copy half-alive.
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_init_process)

    def _live_pool(self) -> ProcessPoolExecutor:
        """The pool, a new one if a process died (killed, out of memory): that breaks a pool for good.

        The runs it held are not lost: a running one's lease expires, a queued one waits past
        redispatch_seconds, and the reaper sends both again."""
        with self._lock:
            if self._pool._broken:
                log.error("a local worker process died (%s); starting a new pool", self._pool._broken)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            return self._pool

    def start(self, on_end: OnEnd) -> None:
        """Start and warm up every process; learn whether they have a CUDA device."""
        self._on_end = on_end
        self._has_cuda = all(f.result() for f in [self._pool.submit(cuda_available) for _ in range(self.processes)])

    def has_cuda(self) -> bool:
        return self._has_cuda

    def dispatch(self, run_id: str, queue: str) -> None:
        """Run the job or chunk soon (the queue only matters to Celery); the row, not a future, reports the outcome."""
        try:
            future = self._live_pool().submit(run, run_id)
        except BrokenProcessPool:  # broke since the check: the next pool takes it
            future = self._live_pool().submit(run, run_id)
        future.add_done_callback(functools.partial(self._ended, run_id))

    def ready(self) -> bool:
        """True while every process of the pool is alive: no round trip, which a busy pool would hold up."""
        return all(process.is_alive() for process in self._live_pool()._processes.values())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ended(self, run_id: str, future: Future[dict[str, Any] | None]) -> None:
        # run() handles its own errors; what reaches here is a dead process or a failed claim.
        row = None
        if not future.cancelled():
            if (exc := future.exception()) is not None:
                log.warning("run %s did not run in the local pool: %r; the reaper will send it again", run_id, exc)
            else:
                row = future.result()
        self._on_end(run_id, row)
