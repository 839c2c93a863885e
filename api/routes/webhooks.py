"""/v1/webhooks: an owner's endpoints (their secret shown once), their delivery log, a retry, a ping."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api import schemas
from api.deps import OwnerDep, SessionDep, check_id
from api.errors import error
from api.pages import Cursor, Limit
from jobs import webhooks
from jobs.tables import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(description="The webhook's id: `wh_` and 24 lowercase hex digits.")]
DeliveryId = Annotated[str, Path(description="The delivery's id (its webhook-id header): `msg_` and 24 hex digits.")]
DISABLED = error(409, "The endpoint is disabled.")


def webhook_out(endpoint: WebhookEndpoint) -> schemas.Webhook:
    return schemas.Webhook.model_validate(endpoint, from_attributes=True)


def with_secret(endpoint: WebhookEndpoint) -> schemas.WebhookWithSecret:
    return schemas.WebhookWithSecret.model_validate(endpoint, from_attributes=True)


def delivery_out(delivery: WebhookDelivery) -> schemas.WebhookDeliveryOut:
    return schemas.WebhookDeliveryOut(id=delivery.id, type=delivery.event_type, status=delivery.status)


# Sync routes: creating one resolves the URL's host, which must not hold the event loop.
@router.post("", status_code=201)
def create_webhook(body: schemas.WebhookIn, owner: OwnerDep, session: SessionDep) -> schemas.WebhookWithSecret:
    """A new endpoint; its signing secret is in this answer only. 422 when the URL's host
    resolves to a loopback, private, link-local or metadata address."""
    made = webhooks.create(session, owner=owner, url=body.url, events=body.events, description=body.description)
    return with_secret(made)


@router.get("")
def list_webhooks(owner: OwnerDep, session: SessionDep) -> schemas.Page[schemas.Webhook]:
    """The owner's endpoints, newest first (a few at most: one page)."""
    return schemas.Page[schemas.Webhook](
        items=[webhook_out(e) for e in webhooks.endpoints(session, owner)], next_cursor=None
    )


@router.get("/{webhook_id}")
def get_webhook(webhook_id: WebhookId, owner: OwnerDep, session: SessionDep) -> schemas.Webhook:
    return webhook_out(webhooks.endpoint(session, owner, check_id("wh", webhook_id)))


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: WebhookId, owner: OwnerDep, session: SessionDep) -> Response:
    """The endpoint and its log; nothing more is sent to it."""
    webhooks.remove(session, owner, check_id("wh", webhook_id))
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret")
def rotate_webhook_secret(webhook_id: WebhookId, owner: OwnerDep, session: SessionDep) -> schemas.WebhookWithSecret:
    """A new signing secret, in this answer only; the old one signs nothing more."""
    return with_secret(webhooks.rotate_secret(session, owner, check_id("wh", webhook_id)))


@router.post("/{webhook_id}/enable")
def enable_webhook(webhook_id: WebhookId, owner: OwnerDep, session: SessionDep) -> schemas.Webhook:
    """An endpoint disabled after failing deliveries sends again."""
    return webhook_out(webhooks.enable(session, owner, check_id("wh", webhook_id)))


@router.post("/{webhook_id}/test", status_code=202, responses=DISABLED)
def test_webhook(webhook_id: WebhookId, owner: OwnerDep, session: SessionDep) -> schemas.WebhookDeliveryOut:
    """Sends a `ping` event to the endpoint."""
    return delivery_out(webhooks.ping(session, owner, check_id("wh", webhook_id)))


@router.get("/{webhook_id}/deliveries")
def list_webhook_deliveries(
    webhook_id: WebhookId, owner: OwnerDep, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> schemas.Page[schemas.WebhookAttemptOut]:
    """Each try of each delivery to the endpoint, newest first."""
    found = webhooks.endpoint(session, owner, check_id("wh", webhook_id))
    rows, following = webhooks.attempts(session, found.id, limit, int(cursor[1:]) if cursor else None)
    items = [
        schemas.WebhookAttemptOut(
            delivery_id=row.attempt.delivery_id,
            type=row.event_type,
            attempted_at=row.attempt.attempted_at,
            http_status=row.attempt.http_status,
            error=row.attempt.error,
            duration_seconds=row.attempt.duration_seconds,
        )
        for row in rows
    ]
    return schemas.Page[schemas.WebhookAttemptOut](
        items=items, next_cursor=f"c{following}" if following is not None else None
    )


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry", status_code=202, responses=DISABLED)
def retry_webhook_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, owner: OwnerDep, session: SessionDep
) -> schemas.WebhookDeliveryOut:
    """The delivery sent again now, with the same webhook-id."""
    retried = webhooks.retry(session, owner, check_id("wh", webhook_id), check_id("msg", delivery_id))
    return delivery_out(retried)
