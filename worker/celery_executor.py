"""The executor serve dispatches through when TINYTRAIN_EXECUTOR=celery: "run X" on Redis."""

import threading
import time

import redis

from jobs import lifecycle, workers
from jobs.db import session_scope
from jobs.settings import Settings
from worker.celery_app import ENDED, TASK, make_app
from worker.executor import OnEnd


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
        self.app.send_task(TASK, args=[run_id], queue=queue, retry=True, retry_policy=policy)

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
