"""API keys: shown once, stored only as a sha256 hash; each key names its owner."""

import hashlib
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobs.db import utcnow
from jobs.tables import ApiKey

# Every key create() makes: "tt_" and token_urlsafe(32). Text of any other shape is no key.
_SHAPE = re.compile(r"tt_[A-Za-z0-9_-]{43}")


def well_formed(key: str) -> bool:
    """Whether key has the shape of a key (so that it could exist)."""
    return _SHAPE.fullmatch(key) is not None


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


def any_key(*, session: Session) -> bool:
    """True when at least one key exists."""
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def list_keys(*, session: Session) -> list[ApiKey]:
    """All keys, oldest first (their prefixes, never the keys)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def valid(*, session: Session, digests: list[str]) -> set[str]:
    """Those of these digests (of keys) that belong to unrevoked keys."""
    found = select(ApiKey.key_hash).where(ApiKey.key_hash.in_(digests), ApiKey.revoked_at.is_(None))
    return set(session.scalars(found))


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
