"""The deliverer: threads of every serve and worker process that send the webhook outbox.

Each claims one due delivery at a time (jobs/webhooks.py), checks its URL again (DNS may have
changed since the endpoint was made), connects to the address it checked, signs the body as
the Standard Webhooks specification says and records what came back. Redirects are not
followed and the answer's body is never read."""

import ipaddress
import logging
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook

from jobs import webhooks
from jobs.db import session_scope, utcnow
from jobs.settings import get_settings

log = logging.getLogger(__name__)

SENDERS = 4  # deliveries in flight per process: one slow receiver holds one of them
IDLE_SECONDS = 0.5  # how often an idle sender looks for due deliveries


def headers(secret: str, delivery_id: str, at: datetime, payload: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "tinytrain-webhooks",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, at, payload),
    }


def _pinned(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """url with its host replaced by the address that was checked (so the connection goes
    where the check looked, whatever DNS answers next), the Host header, and the TLS name."""
    parts = urlsplit(url)
    address = webhooks.address_of(url)
    shown = f"[{address}]" if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) else address
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    return urlunsplit(parts._replace(netloc=netloc)), {"host": parts.netloc}, {"sni_hostname": parts.hostname or ""}


def send(claimed: webhooks.Claimed) -> None:
    """One attempt of the claimed delivery, recorded."""
    settings = get_settings()
    at, started = utcnow(), time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        url, host, extensions = _pinned(claimed.url)
        signed = headers(claimed.secret, claimed.delivery_id, at, claimed.payload)
        with (
            httpx.Client(follow_redirects=False, timeout=settings.webhook_timeout_seconds) as client,
            client.stream(
                "POST", url, content=claimed.payload.encode(), headers={**signed, **host}, extensions=extensions
            ) as answer,
        ):
            status = answer.status_code
    except webhooks.Refused as e:
        error = f"refused: {e}"
    except httpx.TimeoutException:
        error = f"no answer within {settings.webhook_timeout_seconds:g} s"
    except (httpx.HTTPError, OSError) as e:
        error = f"{type(e).__name__}: {e}"[:500]
    with session_scope() as session:
        webhooks.record(session, claimed, at=at, http_status=status, error=error, seconds=time.monotonic() - started)


class Deliverer:
    """SENDERS threads sending due deliveries until stop()."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"tinytrain-webhooks-{i}", daemon=True) for i in range(SENDERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with session_scope() as session:
                    claimed = webhooks.claim(session)
                if claimed is not None:
                    send(claimed)
                    continue
            except Exception:
                log.exception("webhook delivery failed; trying again shortly")
            self._stopped.wait(IDLE_SECONDS)
