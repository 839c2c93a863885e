"""What `serve` dispatches runs (jobs, sweep chunks) through: the local pool or Celery (TINYTRAIN_EXECUTOR)."""

from collections.abc import Callable
from typing import Protocol

from jobs.settings import Settings


class Executor(Protocol):
    def has_cuda(self) -> bool:
        """Whether a worker can take device=cuda runs now."""

    def start(self, on_end: Callable[[str], None]) -> None:
        """Start; on_end(run_id) is called (from any thread) as soon as this process learns a run ended."""

    def dispatch(self, run_id: str, queue: str) -> None: ...
    def ready(self) -> bool: ...
    def shutdown(self) -> None: ...


def make_executor(settings: Settings) -> Executor:
    """The executor TINYTRAIN_EXECUTOR names."""
    if settings.executor == "celery":
        from worker.celery_app import CeleryExecutor

        return CeleryExecutor(settings)
    from worker.local import LocalExecutor

    return LocalExecutor(settings.local_workers)
