"""Webhooks: an owner's endpoints, the outbox of deliveries and the log of their attempts.

A delivery is inserted in the transaction of the status change it tells (`ended`), so no event
is lost and none is told that did not happen. Any serve or worker process sends it
(worker/deliverer.py): a conditional UPDATE claims it for a lease, as a run is claimed, and the
attempt is written only by the claim that made it."""

import base64
import ipaddress
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pydantic_core
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from jobs import summaries
from jobs.db import lock_owner, utcnow
from jobs.errors import Conflict, InvalidInput, NotFound, QuotaExceeded
from jobs.settings import get_settings
from jobs.status import Status
from jobs.tables import Job, Sweep, WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_id

EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "sweep.succeeded", "sweep.failed", "sweep.cancelled")
PING = "ping"
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
# Long enough for a send (its timeout) and the writes around it; a deliverer that dies holding
# a claim only delays that delivery by this much.
LEASE = timedelta(seconds=60)


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Refused(Exception):
    """A webhook URL this service will not call; the message says why."""


def address_of(url: str) -> str:
    """The address url's host resolves to, or Refused: not http(s), no host, a host that does
    not resolve, or one with an address this service must not reach (unless allowed). Resolves
    the host: call it off the event loop."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not hold credentials: the signature tells the receiver who sent it")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        raise Refused(f"host {parts.hostname} does not resolve") from None
    addresses = [str(address[0]) for *_, address in found]
    if not get_settings().webhook_allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast:
                raise Refused(f"host {parts.hostname} resolves to {ip}: loopback, private, link-local or reserved")
    return addresses[0]


def create(
    session: Session, *, owner: str, url: str, events: Sequence[str], description: str | None
) -> WebhookEndpoint:
    """A new endpoint (committed); url is checked with `refused` first."""
    try:
        address_of(url)
    except Refused as e:
        raise InvalidInput(("body", "url"), str(e)) from None
    endpoint = WebhookEndpoint(
        id=new_id("wh"),
        owner=owner,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret=new_secret(),
        enabled=True,
    )
    # Inserted, then counted, under the owner's lock: two creates at once cannot both take the last place.
    lock_owner(session, owner)
    session.add(endpoint)
    session.flush()
    limit = get_settings().max_webhooks_per_owner
    if (session.scalar(select(func.count()).where(WebhookEndpoint.owner == owner)) or 0) > limit:
        session.rollback()
        raise QuotaExceeded(f"an owner has at most {limit} webhook endpoints (TINYTRAIN_MAX_WEBHOOKS_PER_OWNER)")
    session.commit()
    return endpoint


def endpoints(session: Session, owner: str) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.owner == owner).order_by(WebhookEndpoint.seq.desc())
    return list(session.scalars(query))


def endpoint(session: Session, owner: str, endpoint_id: str) -> WebhookEndpoint:
    found = session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.owner == owner, WebhookEndpoint.id == endpoint_id)
    )
    if found is None:
        raise NotFound(f"webhook {endpoint_id[:64]} not found")
    return found


def remove(session: Session, owner: str, endpoint_id: str) -> None:
    """The endpoint, its deliveries (none is sent after this commits) and its log."""
    found = endpoint(session, owner, endpoint_id)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == found.id))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == found.id))
    session.delete(found)
    session.commit()


def rotate_secret(session: Session, owner: str, endpoint_id: str) -> WebhookEndpoint:
    found = endpoint(session, owner, endpoint_id)
    found.secret = new_secret()
    session.commit()
    return found


def enable(session: Session, owner: str, endpoint_id: str) -> WebhookEndpoint:
    """An endpoint disabled by failures sends again, from its next event or retry."""
    found = endpoint(session, owner, endpoint_id)
    found.enabled, found.disabled_reason = True, None
    session.commit()
    return found


def _enqueue(session: Session, endpoint_id: str, event_type: str, data: dict[str, Any]) -> WebhookDelivery:
    now = utcnow()
    body = {"type": event_type, "timestamp": now, "data": data}
    delivery = WebhookDelivery(
        id=new_id("msg"),
        endpoint_id=endpoint_id,
        event_type=event_type,
        payload=pydantic_core.to_json(body).decode(),
        created_at=now,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(delivery)
    return delivery


def ended(session: Session, table: type[Job] | type[Sweep], ids: Sequence[str]) -> None:
    """Deliveries of these runs' ends (their final status is set in this transaction) to their
    owners' enabled endpoints that want them. Not committed: the status change commits them."""
    if not ids:
        return
    ending = table.status.in_((Status.SUCCEEDED, Status.FAILED, Status.CANCELLED))
    query = select(table).where(table.id.in_(ids), ending).execution_options(populate_existing=True)
    runs: Sequence[Job | Sweep] = session.scalars(query).all()  # type: ignore[assignment]
    for run in runs:
        event = f"{'job' if isinstance(run, Job) else 'sweep'}.{run.status}"
        mine = select(WebhookEndpoint).where(WebhookEndpoint.owner == run.owner, WebhookEndpoint.enabled)
        wanting = [e.id for e in session.scalars(mine) if event in e.events]
        if wanting:
            data = summaries.job(run) if isinstance(run, Job) else summaries.sweep(run)
            for endpoint_id in wanting:
                _enqueue(session, endpoint_id, event, data)


def ping(session: Session, owner: str, endpoint_id: str) -> WebhookDelivery:
    """A `ping` delivery to the endpoint (committed), whatever events it wants."""
    found = endpoint(session, owner, endpoint_id)
    if not found.enabled:
        raise Conflict(f"webhook {found.id} is disabled: enable it first")
    delivery = _enqueue(session, found.id, PING, {"webhook_id": found.id})
    session.commit()
    return delivery


def retry(session: Session, owner: str, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    """The delivery sent again now, with its webhook-id (committed)."""
    found = endpoint(session, owner, endpoint_id)
    if not found.enabled:
        raise Conflict(f"webhook {found.id} is disabled: enable it first")
    delivery = session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == found.id)
    )
    if delivery is None:
        raise NotFound(f"delivery {delivery_id[:64]} not found")
    delivery.status, delivery.next_attempt_at = PENDING, utcnow()
    session.commit()
    return delivery


@dataclass(frozen=True)
class Logged:
    """One attempt as the delivery log shows it."""

    attempt: WebhookAttempt
    event_type: str


def attempts(session: Session, endpoint_id: str, limit: int, before: int | None) -> tuple[list[Logged], int | None]:
    """The endpoint's attempts, newest first, from below seq `before`; and the seq to go on from."""
    query = (
        select(WebhookAttempt, WebhookDelivery.event_type)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .where(WebhookAttempt.endpoint_id == endpoint_id)
        .order_by(WebhookAttempt.seq.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(WebhookAttempt.seq < before)
    rows = [Logged(attempt, event_type) for attempt, event_type in session.execute(query).tuples()]
    following = rows[limit - 1].attempt.seq if len(rows) > limit else None
    return rows[:limit], following


@dataclass(frozen=True)
class Claimed:
    """A delivery this deliverer may try until `until`, with what it is sent with."""

    delivery_id: str
    endpoint_id: str
    url: str
    secret: str
    payload: str
    until: datetime


def claim(session: Session) -> Claimed | None:
    """A due delivery of an enabled endpoint, claimed for LEASE (committed), or None."""
    now = utcnow()
    free = or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)
    due = (
        select(WebhookDelivery.id, WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.secret)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, free, WebhookEndpoint.enabled)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(8)
    )
    for delivery_id, endpoint_id, url, secret in session.execute(due).tuples().all():
        until = now + LEASE
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING, free)
            .values(claimed_until=until)
            .returning(WebhookDelivery.payload)
        ).first()
        session.commit()
        if taken is not None:
            return Claimed(delivery_id, endpoint_id, url, secret, taken[0], until)
    session.commit()
    return None


def record(
    session: Session, claimed: Claimed, *, at: datetime, http_status: int | None, error: str | None, seconds: float
) -> None:
    """The attempt's outcome (committed): done on a 2xx; else the next try after the schedule's
    next delay, or, past its last, the delivery failed and its endpoint disabled."""
    schedule = get_settings().webhook_retry_seconds
    ours = (WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.claimed_until == claimed.until)
    tries = session.scalar(select(WebhookDelivery.attempts).where(*ours))
    if tries is None:
        session.commit()
        return  # deleted, or the claim expired and another deliverer has it
    tries += 1
    ok = http_status is not None and 200 <= http_status < 300
    gave_up = not ok and tries > len(schedule)
    status = SUCCEEDED if ok else FAILED if gave_up else PENDING
    next_at = at if ok or gave_up else utcnow() + timedelta(seconds=schedule[tries - 1])
    values = {"attempts": tries, "status": status, "next_attempt_at": next_at, "claimed_until": None}
    if session.execute(update(WebhookDelivery).where(*ours).values(**values)).rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return
    session.add(
        WebhookAttempt(
            delivery_id=claimed.delivery_id,
            endpoint_id=claimed.endpoint_id,
            attempted_at=at,
            http_status=http_status,
            error=error,
            duration_seconds=seconds,
        )
    )
    if gave_up:
        said = f"HTTP {http_status}" if http_status is not None else error
        reason = (
            f"disabled at {utcnow().isoformat()}: every try of delivery {claimed.delivery_id} failed (last: {said})"
        )
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == claimed.endpoint_id)
            .values(enabled=False, disabled_reason=reason)
        )
    session.commit()
