"""Requests per API key (TINYTRAIN_RATE_LIMIT) and failed authentications per client address
(TINYTRAIN_AUTH_FAILURE_LIMIT), counted in Redis when the service has a broker."""

import ipaddress
import logging
import math
import time
from collections import OrderedDict

from fastapi import HTTPException
from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from jobs.settings import Settings

log = logging.getLogger(__name__)


async def _retry_after(limiter: SlidingWindowCounterRateLimiter, limit: RateLimitItem, *identity: str) -> str:
    """Seconds until identity may try again, for Retry-After (1 if the storage went down meanwhile)."""
    try:
        reset = (await limiter.get_window_stats(limit, *identity)).reset_time
    except Exception:
        log.warning("rate limit storage unavailable; Retry-After guessed", exc_info=True)
        return "1"
    return str(max(1, math.ceil(reset - time.time())))


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
        self.auth_failures = AuthFailures(settings, self.limiter)

    async def check(self, identity: str) -> None:
        """Count a request of identity (a key's hash); 429 with Retry-After over the limit."""
        try:
            allowed = await self.limiter.hit(self.limit, identity)
        except Exception:  # its Redis is down: serve rather than fail every request
            log.warning("rate limit storage unavailable; request not counted", exc_info=True)
            return
        if not allowed:
            raise HTTPException(
                429,
                f"more than {self.limit} requests with this key; slow down",
                headers={"Retry-After": await _retry_after(self.limiter, self.limit, identity)},
            )


def client_address(client: tuple[str, int] | None) -> str:
    """Whom failures are counted against: the client's IPv4 address, or its IPv6 /64 (one host
    can hold a whole /64, so counting single IPv6 addresses would limit nothing)."""
    host = client[0] if client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an address (a Unix socket's peer, a proxy's odd header): as it is
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


class AuthFailures:
    """Failed authentications (a key of a key's shape that is no valid key) per client address.

    Each such request costs a database lookup and a rate-limit bucket of its own, so the per-key
    limit cannot slow a stream of guesses. Only failures count, and an address over the limit is
    refused before any lookup, except with a key this process has seen succeed: a user who
    mistyped a key once, or who shares an address (a NAT, a proxy) with someone guessing, keeps
    working with the keys in use. A key this process has not seen succeed yet waits out the
    address's limit with the guesses: it cannot be told from one without the lookup."""

    KNOWN_KEYS = 10_000  # digests of keys that authenticated here lately, the least recent dropped

    def __init__(self, settings: Settings, limiter: SlidingWindowCounterRateLimiter) -> None:
        self.limit = parse(settings.auth_failure_limit)
        self.limiter = limiter
        self.known: OrderedDict[str, None] = OrderedDict()

    async def check(self, address: str, digest: str) -> None:
        """429 with Retry-After when address is over the limit, unless digest is a key known here."""
        if digest in self.known:
            return
        identity = ("auth-failures", address)
        try:
            allowed = await self.limiter.test(self.limit, *identity)
        except Exception:  # its Redis is down: authenticate rather than fail every request
            log.warning("rate limit storage unavailable; authentication failures not checked", exc_info=True)
            return
        if not allowed:
            raise HTTPException(
                429,
                f"more than {self.limit} failed authentications from this address; try again later",
                headers={"Retry-After": await _retry_after(self.limiter, self.limit, *identity)},
            )

    async def failed(self, address: str, digest: str) -> None:
        """Count a key that authenticated nothing (one revoked since it last succeeded too)."""
        self.known.pop(digest, None)
        try:
            await self.limiter.hit(self.limit, "auth-failures", address)
        except Exception:
            log.warning("rate limit storage unavailable; authentication failure not counted", exc_info=True)

    def succeeded(self, digest: str) -> None:
        self.known[digest] = None
        self.known.move_to_end(digest)
        if len(self.known) > self.KNOWN_KEYS:
            self.known.popitem(last=False)
