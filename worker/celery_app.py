"""The Celery app, alike for the worker (`tinytrain worker`) and the sender (serve's executor):
its configuration and its one task, "run X" (a job or a chunk of a sweep).

Celery only delivers the message; the database row is the truth (no result backend), and
run() re-reads it, so a duplicate or late message does nothing.
"""

import logging

import redis
from celery import Celery
from kombu.entity import Queue

from jobs import lifecycle
from jobs.settings import Settings
from worker.run import run

TASK = "jobs.train"
ENDED = "tinytrain:ended"  # the Redis channel on which workers announce that a run ended
log = logging.getLogger(__name__)


def make_app(settings: Settings) -> Celery:
    """The Celery app for these settings."""
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
        task_queues=[Queue(name) for name in lifecycle.QUEUES.values()],
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

    app.task(name=TASK)(train)
    return app
