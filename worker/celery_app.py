"""The Celery path: the app, its one task, and the executor `serve` dispatches through.

Celery only delivers "run X" (a job or a chunk of a sweep); the database row is the truth (no
result backend), and run() re-reads it, so a duplicate or late message does nothing.
"""

import logging
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu.entity import Queue

from jobs import lifecycle, workers
from jobs.db import session_scope
from jobs.settings import Settings, get_settings
from worker.executor import OnEnd
from worker.reaper import Reaper
from worker.run import run

QUEUES = tuple(lifecycle.QUEUES.values())
ENDED = "tinytrain:ended"  # the Redis channel on which workers announce that a run ended
log = logging.getLogger(__name__)


def make_app(settings: Settings) -> Celery:
    """The Celery app for these settings: the worker's (`tinytrain worker`) and the sender's."""
    app = Celery("tinytrain", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Ack after run returns: a worker that dies mid-job leaves the message to be delivered
        # again (reject on worker lost says the same for a pool process that dies, should a pool
        # that forks ever be used; `tinytrain worker` runs threads).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per pool thread: a prefetched job would wait behind a long one.
        worker_prefetch_multiplier=1,
        # Redis redelivers an unacked message after this; it must exceed the longest run (a lost
        # worker is found sooner by its lease, and the reaper sends the job again).
        broker_transport_options={"visibility_timeout": 7 * 24 * 3600},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # On a lost broker connection the unacked message comes back. Celery cancels the running
        # task where its pool can (a thread cannot be stopped: that run goes on, and the claim's
        # conditional UPDATE keeps the redelivered message from starting a second run).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A typo in a queue name must fail, not create a queue no worker reads.
        task_create_missing_queues=False,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="train",
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        # Task events for Flower (docker compose's monitoring profile); nothing reads them otherwise.
        worker_send_task_events=True,
    )
    announcer = redis.Redis.from_url(settings.broker_url, socket_timeout=1, socket_connect_timeout=1)

    def train(run_id: str) -> None:
        try:
            run(run_id)
        finally:  # wakes the requests and streams waiting for it in every serve at once
            try:
                announcer.publish(ENDED, run_id)
            except redis.RedisError:  # they learn it at their next poll instead
                log.warning("could not announce the end of %s", run_id, exc_info=True)

    app.task(name="jobs.train")(train)
    return app


class CeleryExecutor:
    """Sends "run X" (a job or a sweep's chunk) to the queue of its device."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_app(settings)

    def has_cuda(self) -> bool:
        """Whether a live worker reads the gpu queue (else device=cuda would wait forever)."""
        with session_scope() as session:
            return workers.reading(session=session, queue=lifecycle.QUEUES["cuda"])

    def start(self, on_end: OnEnd) -> None:
        threading.Thread(target=self._listen, args=(on_end,), name="tinytrain-ended", daemon=True).start()

    def _listen(self, on_end: OnEnd) -> None:
        """on_end for every run a worker announces (by id only); reconnects while Redis is away."""
        while True:
            try:
                pubsub = redis.Redis.from_url(self.settings.broker_url).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(ENDED)
                for message in pubsub.listen():
                    on_end(message["data"].decode(), None)
            except redis.RedisError:
                time.sleep(1.0)

    def dispatch(self, run_id: str, queue: str) -> None:
        """Publish the message; raises if Redis does not answer within about a second."""
        # A few quick retries reconnect a pooled connection that a Redis restart broke.
        policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.3}
        self.app.send_task("jobs.train", args=[run_id], queue=queue, retry=True, retry_policy=policy)

    def ready(self) -> bool:
        """True when Redis answers a PING."""
        try:
            return bool(
                redis.Redis.from_url(self.settings.broker_url, socket_timeout=1, socket_connect_timeout=1).ping()
            )
        except redis.RedisError:
            return False

    def shutdown(self) -> None:
        pass


_reaper: Reaper | None = None


@worker_ready.connect
def _start_reaper(sender: Any, **_: Any) -> None:
    global _reaper
    name, queues = sender.hostname, [queue.name for queue in sender.task_consumer.queues]

    def say_alive() -> None:
        with session_scope() as session:
            workers.alive(session=session, name=name, queues=queues)

    _reaper = Reaper(CeleryExecutor(get_settings()).dispatch, chores=say_alive)
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(sender: Any, **_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
        with session_scope() as session:
            workers.gone(session=session, name=sender.hostname)
