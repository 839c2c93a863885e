"""API keys: shown once, stored only as a sha256 hash; each key names its owner."""

import functools
import hashlib
import hmac
import secrets
from typing import TypeVar

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session, undefer

from jobs.db import utcnow
from jobs.tables import ApiKey, Dataset, Job


def digest(key: str) -> str:
    """The stored form of a key (also what identifies it to the rate limiter)."""
    # Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create(*, session: Session, owner: str) -> str:
    """A new key for owner; the only time the key itself exists outside its holder."""
    key = "tt_" + secrets.token_urlsafe(32)
    session.add(ApiKey(owner=owner, key_hash=digest(key), prefix=key[:10]))
    session.commit()
    return key


# Built once: every request runs it, and building a statement costs more than running it.
_OWNER_OF = select(ApiKey.owner, ApiKey.key_hash).where(
    ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)
)


def owner_of(*, session: Session, key: str) -> str | None:
    """The owner of a valid, unrevoked key, else None."""
    hashed = digest(key)
    row = session.execute(_OWNER_OF, {"digest": hashed}).one_or_none()
    return row.owner if row is not None and hmac.compare_digest(row.key_hash, hashed) else None


Owned = TypeVar("Owned", Dataset, Job)


@functools.cache
def _owned_statement(model: type[Owned]) -> Select[Owned]:
    query = select(model).join(ApiKey, ApiKey.owner == model.owner)
    query = query.where(
        ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None), model.id == bindparam("id")
    )
    return query.options(undefer(Job.result)) if model is Job else query


def owned_by_key(*, session: Session, model: type[Owned], object_id: str, key: str) -> Owned | None:
    """The object if it exists and belongs to the owner of this valid key, in one query; else None.

    One query instead of authenticate-then-fetch: reading a job is the hottest request."""
    found: Owned | None = session.scalar(_owned_statement(model), {"digest": digest(key), "id": object_id})
    return found


def any_key(*, session: Session) -> bool:
    """True when at least one key exists."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def list_keys(*, session: Session) -> list[ApiKey]:
    """All keys, oldest first (their prefixes, never the keys)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke(*, session: Session, prefix: str) -> int:
    """Revoke the unrevoked keys starting with prefix; returns how many."""
    revoked = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix[:10], ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(ApiKey.id)
    ).all()
    session.commit()
    return len(revoked)
