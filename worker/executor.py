"""What `serve` dispatches runs (jobs, sweep chunks) through: the local pool or Celery (TINYTRAIN_EXECUTOR)."""

from collections.abc import Callable
from typing import Any, Protocol

from jobs.settings import Settings

# on_end(run_id, row), called from any thread as soon as serve learns a run ended: row is the
# job's row as the run ended it where the executor hands it back (the local pool), else None.
OnEnd = Callable[[str, dict[str, Any] | None], None]


class Executor(Protocol):
    def has_cuda(self) -> bool:
        """Whether a worker can take device=cuda runs now."""

    def start(self, on_end: OnEnd) -> None:
        """Start, calling on_end for each run that ends."""

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
