"""Requests per API key (TINYTRAIN_RATE_LIMIT), counted in Redis when the service has a broker."""

import logging
import math
import time

from fastapi import HTTPException
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from jobs.settings import Settings

log = logging.getLogger(__name__)


class RateLimit:
    def __init__(self, settings: Settings) -> None:
        self.limit = parse(settings.rate_limit)
        # Shared by every serve process on one Redis; per process without one.
        storage = settings.broker_url if settings.executor == "celery" else "memory://"
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage))

    def check(self, identity: str) -> None:
        """Count a request of identity (a key's hash); 429 with Retry-After over the limit.

        Called in the worker thread that also does the request's database work."""
        try:
            allowed = self.limiter.hit(self.limit, identity)
        except Exception:  # its Redis is down: serve rather than fail every request
            log.warning("rate limit storage unavailable; request not counted", exc_info=True)
            return
        if not allowed:
            reset = self.limiter.get_window_stats(self.limit, identity).reset_time
            raise HTTPException(429, f"more than {self.limit} requests with this key; slow down",
                                headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))})  # fmt: skip
