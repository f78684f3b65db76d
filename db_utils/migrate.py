"""Alembic migrations of the SQL store, run from Python (no alembic.ini needed)."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from db_utils.config import DbSettings

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for ``url`` (default: ``DATABASE_URL``) over db_utils/migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("sqlalchemy.url", (url or DbSettings.from_env().url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the store at ``url`` up to ``revision`` (idempotent: an up-to-date store is left alone)."""
    command.upgrade(alembic_config(url), revision)


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Bring the store behind `engine` up to `revision` on one of its own connections, so that a store only
    that engine can reach (in-memory SQLite, a test's engine) is migrated as it will be used."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current(url: str | None = None) -> None:
    """Print the store's current revision."""
    command.current(alembic_config(url))
