"""API keys: the header that sends one, and new ones made with `tinytrain keys create`."""

from pathlib import Path

from tests.support.cli import tinytrain


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for key."""
    return {"Authorization": f"Bearer {key}"}


def new_key(owner: str, *, env: dict[str, str], cwd: Path) -> str:
    """A new key for owner in the database env points at."""
    return tinytrain("keys", "create", "--owner", owner, env=env, cwd=cwd).strip()
