"""The local executor: a process pool owned by `serve`, so training never blocks a request."""

import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from threading import Lock
from typing import TypeVar

import model
from model.training import cuda_available
from worker.run import run

T = TypeVar("T")


def _init_process() -> None:
    # Linux kills the process when serve dies: it must not go on training an attempt that the
    # lease has handed to a new run.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    model.warm_up()


def _ping() -> bool:
    return True


class LocalExecutor:
    """Runs worker.run.run(run_id) in a pool of warmed-up processes."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = Lock()
        self._pool = self._new_pool()
        self.has_cuda = False

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: serve has threads (and maybe CUDA) that a fork would copy half-alive.
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_init_process)

    def start(self) -> None:
        """Start and warm up every process; learn whether they have a CUDA device."""
        self.has_cuda = all(f.result() for f in [self._pool.submit(cuda_available) for _ in range(self.processes)])

    def _submit(self, fn: Callable[..., T], *args: str) -> Future[T]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool:  # a process died (killed, out of memory): start a new pool
                self._pool = self._new_pool()
                return self._pool.submit(fn, *args)

    def dispatch(self, run_id: str, queue: str) -> None:
        """Run the job or chunk soon (the queue only matters to Celery); the row, not a future, reports the outcome."""
        self._submit(run, run_id)

    def ready(self) -> bool:
        """True when a pool process answers within a second."""
        try:
            return self._submit(_ping).result(timeout=1.0)
        except Exception:
            return False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
