"""API keys: shown once, stored only as a sha256 hash; each key names its owner."""

import functools
import hashlib
import secrets

from sqlalchemy import FromClause, bindparam, select, update
from sqlalchemy.orm import Session

from jobs.db import AnySelect, Record, fetch_one, utcnow
from jobs.tables import ApiKey


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


# Built once: every request runs these, and building a statement costs more than running it.
_OWNER_OF = select(ApiKey.owner).where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None))


def owner_of(key: str) -> str | None:
    """The owner of a valid, unrevoked key, else None."""
    row = fetch_one(_OWNER_OF, {"digest": digest(key)})
    return row.owner if row is not None else None


@functools.cache
def _owned_statement(table: FromClause) -> AnySelect:
    # Every column but a dataset's points: a read of the object never needs them.
    columns = [c for c in table.columns if c.name != "points"]
    return (
        select(*columns)
        .join(ApiKey.__table__, ApiKey.owner == table.c.owner)
        .where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None), table.c.id == bindparam("id"))
    )


def owned_by_key(*, table: FromClause, object_id: str, key: str) -> Record | None:
    """The row of table (jobs or datasets) with this id if it belongs to the owner of this valid
    key, in one query; else None. One query instead of authenticate-then-fetch: reading a job is
    the hottest request."""
    return fetch_one(_owned_statement(table), {"digest": digest(key), "id": object_id})


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
