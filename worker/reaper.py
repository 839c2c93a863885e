"""The reaper: finds running jobs and sweep chunks whose lease expired and queues them again (or fails them)."""

import logging
import threading
from collections.abc import Callable

from jobs import lifecycle
from jobs.db import session_scope
from jobs.settings import get_settings

log = logging.getLogger(__name__)


def reap_once(dispatch: Callable[[str, str], None]) -> None:
    """One pass: expired leases are re-run (dispatched again) or failed after max attempts."""
    with session_scope() as session:
        requeued = lifecycle.reap(session=session, max_attempts=get_settings().max_attempts)
    for run_id, queue in requeued:
        dispatch(run_id, queue)


class Reaper(threading.Thread):
    """reap_once every half lease (at most 5 s) until stop(); errors are logged, not fatal."""

    def __init__(self, dispatch: Callable[[str, str], None]) -> None:
        super().__init__(name="tinytrain-reaper", daemon=True)
        self.dispatch, self.interval = dispatch, min(get_settings().lease_seconds / 2, 5.0)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                reap_once(self.dispatch)
            except Exception:
                log.exception("reaper pass failed; trying again in %.1f s", self.interval)

    def stop(self) -> None:
        self._stopped.set()
