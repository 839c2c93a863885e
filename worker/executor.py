"""What `serve` dispatches runs (jobs, sweep chunks) through: the local pool or Celery (TINYTRAIN_EXECUTOR)."""

from typing import Protocol

from jobs.settings import Settings


class Executor(Protocol):
    has_cuda: bool  # whether a worker can take device=cuda runs (local: known; Celery: assumed)

    def start(self) -> None: ...
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
