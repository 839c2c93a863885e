"""Requests per API key (TINYTRAIN_RATE_LIMIT), counted in Redis when the service has a broker."""

import logging
import math
import time

from fastapi import HTTPException
from limits import parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from jobs.settings import Settings

log = logging.getLogger(__name__)


class RateLimit:
    def __init__(self, settings: Settings) -> None:
        self.limit = parse(settings.rate_limit)
        # Shared by every serve process on one Redis; per process without one. Async storage:
        # counting runs on the event loop, with no hop to a worker thread.
        if settings.executor == "celery":
            storage = storage_from_string(f"async+{settings.broker_url}", implementation="redispy")
        else:
            storage = storage_from_string("async+memory://")
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    async def check(self, identity: str) -> None:
        """Count a request of identity (a key's hash); 429 with Retry-After over the limit."""
        try:
            allowed = await self.limiter.hit(self.limit, identity)
        except Exception:  # its Redis is down: serve rather than fail every request
            log.warning("rate limit storage unavailable; request not counted", exc_info=True)
            return
        if not allowed:
            reset = (await self.limiter.get_window_stats(self.limit, identity)).reset_time
            raise HTTPException(
                429,
                f"more than {self.limit} requests with this key; slow down",
                headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
            )
