"""The reaper: the housekeeping thread of every serve and worker process.

Each pass (every half lease, at most 5 s) ends or re-queues runs whose lease expired, sends
queued runs that wait too long (their message may be lost: a dead queue, a killed pool
process, a run that failed before its claim), and runs the process's own chores (a Celery
worker says it is alive). Errors are logged and the next pass tries again."""

import logging
import threading
from collections.abc import Callable

from jobs import lifecycle, storage
from jobs.db import session_scope
from jobs.settings import get_settings

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str], None]


def reap_once(dispatch: Dispatch, *, everything: bool = False) -> None:
    """One pass: expired leases are queued again (or ended), then queued runs are sent that
    need it (with everything: all queued runs, as a new local pool holds none)."""
    settings = get_settings()
    with session_scope() as session:
        lifecycle.reap(session=session, max_attempts=settings.max_attempts)
    with session_scope() as session:
        runs = lifecycle.undispatched(session=session, wait_seconds=settings.redispatch_seconds, everything=everything)
    sent: list[str] = []
    try:
        for run_id, queue in runs:
            dispatch(run_id, queue)
            sent.append(run_id)
    except Exception:
        log.warning("could not send %d queued runs; trying again next pass", len(runs) - len(sent), exc_info=True)
    if sent:
        with session_scope() as session:
            lifecycle.dispatched(session=session, ids=sent)
    storage.purge_expired()  # last: a purge that fails must not hold up the runs above


class Reaper(threading.Thread):
    """reap_once (and chores) every half lease (at most 5 s) until stop(); the first pass at once."""

    def __init__(self, dispatch: Dispatch, *, send_all_first: bool = False, chores: Callable[[], None] | None = None):
        super().__init__(name="tinytrain-reaper", daemon=True)
        self.dispatch, self.interval = dispatch, min(get_settings().lease_seconds / 2, 5.0)
        self.send_all_first, self.chores = send_all_first, chores
        self._stopped = threading.Event()

    def run(self) -> None:
        everything = self.send_all_first
        while True:
            try:
                if self.chores is not None:
                    self.chores()
                reap_once(self.dispatch, everything=everything)
                everything = False
            except Exception:
                log.exception("reaper pass failed; trying again in %.1f s", self.interval)
            if self._stopped.wait(self.interval):
                return

    def stop(self) -> None:
        self._stopped.set()
