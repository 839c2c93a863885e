"""Alembic migrations, applied by `tinytrain serve` and `tinytrain db upgrade`."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from jobs import tables  # noqa: F401  (registers the tables on Base.metadata)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at url to the newest schema."""
    command.upgrade(alembic_config(url), "head")
