"""Requests per API key (TINYTRAIN_RATE_LIMIT) and failed authentications per client address
(TINYTRAIN_AUTH_FAILURE_LIMIT), counted in Redis when the service has a broker."""

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import HTTPException
from limits import parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from jobs.settings import Settings

log = logging.getLogger(__name__)


class Counted:
    """A limit of the `limits` library, counted per identity in the service's storage (Redis,
    or this process's memory). While the storage is down nothing is counted: serve rather than
    fail every request."""

    def __init__(self, limiter: SlidingWindowCounterRateLimiter, limit: str, over: str) -> None:
        self.limiter, self.limit = limiter, parse(limit)
        self.over = over.format(limit=self.limit)  # the 429's message

    async def hit(self, *identity: str) -> bool:
        """Count one for identity; whether it is still within the limit."""
        return await self._ask(self.limiter.hit, identity)

    async def test(self, *identity: str) -> bool:
        """Whether identity is within the limit, counting nothing."""
        return await self._ask(self.limiter.test, identity)

    async def _ask(self, ask: Callable[..., Awaitable[bool]], identity: tuple[str, ...]) -> bool:
        try:
            return await ask(self.limit, *identity)
        except Exception:
            log.warning("rate limit storage unavailable; %s not counted", self.limit, exc_info=True)
            return True

    async def refused(self, *identity: str) -> HTTPException:
        """The 429, with the seconds until identity may try again (1 if the storage went down meanwhile)."""
        try:
            reset = (await self.limiter.get_window_stats(self.limit, *identity)).reset_time
            retry_after = str(max(1, math.ceil(reset - time.time())))
        except Exception:
            log.warning("rate limit storage unavailable; Retry-After guessed", exc_info=True)
            retry_after = "1"
        return HTTPException(429, self.over, headers={"Retry-After": retry_after})


class RateLimit:
    def __init__(self, settings: Settings) -> None:
        # Shared by every serve process on one Redis; per process without one. Async storage:
        # counting runs on the event loop, with no hop to a worker thread.
        if settings.executor == "celery":
            storage = storage_from_string(f"async+{settings.broker_url}", implementation="redispy")
        else:
            storage = storage_from_string("async+memory://")
        limiter = SlidingWindowCounterRateLimiter(storage)
        self.requests = Counted(limiter, settings.rate_limit, "more than {limit} requests with this key; slow down")
        self.auth_failures = AuthFailures(settings, limiter)

    async def check(self, identity: str) -> None:
        """Count a request of identity (a key's hash); 429 with Retry-After over the limit."""
        if not await self.requests.hit(identity):
            raise await self.requests.refused(identity)


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
        over = "more than {limit} failed authentications from this address; try again later"
        self.failures = Counted(limiter, settings.auth_failure_limit, over)
        self.known: OrderedDict[str, None] = OrderedDict()

    async def check(self, address: str, digest: str) -> None:
        """429 with Retry-After when address is over the limit, unless digest is a key known here."""
        if digest not in self.known and not await self.failures.test("auth-failures", address):
            raise await self.failures.refused("auth-failures", address)

    async def failed(self, address: str, digest: str) -> None:
        """Count a key that authenticated nothing (one revoked since it last succeeded too)."""
        self.known.pop(digest, None)
        await self.failures.hit("auth-failures", address)

    def succeeded(self, digest: str) -> None:
        self.known[digest] = None
        self.known.move_to_end(digest)
        if len(self.known) > self.KNOWN_KEYS:
            self.known.popitem(last=False)
