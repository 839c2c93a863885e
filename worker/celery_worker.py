"""A Celery worker process (`tinytrain worker`): its app, and the signal handlers that run the
reaper and the webhook deliverer beside it while it reads its queues."""

from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from jobs import workers
from jobs.db import session_scope
from jobs.settings import Settings
from worker.celery_app import make_app
from worker.celery_executor import CeleryExecutor
from worker.deliverer import Deliverer
from worker.reaper import Reaper


class _Housekeeping:
    """The worker's reaper and deliverer, from its worker_ready to its worker_shutdown; the
    reaper's chore is to say that the worker is alive (with the queues it reads), so serve knows
    whether one reads gpu."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reaper: Reaper | None = None
        self.deliverer = Deliverer()

    def start(self, sender: Any, **_: Any) -> None:
        name, queues = sender.hostname, [queue.name for queue in sender.task_consumer.queues]

        def say_alive() -> None:
            with session_scope() as session:
                workers.alive(session=session, name=name, queues=queues)

        self.reaper = Reaper(CeleryExecutor(self.settings).dispatch, chores=say_alive)
        self.reaper.start()
        self.deliverer.start()

    def stop(self, sender: Any, **_: Any) -> None:
        self.deliverer.stop()
        if self.reaper is not None:
            self.reaper.stop()
            with session_scope() as session:
                workers.gone(session=session, name=sender.hostname)


def worker_app(settings: Settings) -> Celery:
    """The app a worker process runs (its worker_main), with its housekeeping connected."""
    housekeeping = _Housekeeping(settings)
    # Held by the signals (weak=False): nothing else keeps the bound methods alive.
    worker_ready.connect(housekeeping.start, weak=False)
    worker_shutdown.connect(housekeeping.stop, weak=False)
    return make_app(settings)
