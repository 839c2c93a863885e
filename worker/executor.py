"""What `serve` dispatches runs (jobs, sweep chunks) through: the local pool (worker/local.py) or
Celery (worker/celery_executor.py), as TINYTRAIN_EXECUTOR says."""

from collections.abc import Callable
from typing import Any, Protocol

# on_end(run_id, row), called from any thread as soon as serve learns a run ended: row is the
# unit's row as the run ended it where the executor hands it back (the local pool), else None.
OnEnd = Callable[[str, dict[str, Any] | None], None]


class Executor(Protocol):
    def has_cuda(self) -> bool:
        """Whether a worker can take device=cuda runs now."""

    def start(self, on_end: OnEnd) -> None:
        """Start, calling on_end for each run that ends."""

    def dispatch(self, run_id: str, queue: str) -> None: ...
    def ready(self) -> bool: ...
    def shutdown(self) -> None: ...
