"""Settings of the SQL store, read from the environment (`core.settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import EnvSettings, env

DEFAULT_DATABASE_URL = "sqlite:///data/recsys.db"


@dataclass(frozen=True)
class DbSettings(EnvSettings):
    """Where the SQL store lives."""

    url: str = env("DATABASE_URL", DEFAULT_DATABASE_URL)
    """SQLAlchemy URL of the SQL store; the default is relative to the working directory. PostgreSQL:
    ``postgresql+psycopg://user:pass@host/db``; Azure SQL / SQL Server:
    ``mssql+pyodbc://user:pass@host/db?driver=ODBC+Driver+18+for+SQL+Server``."""
    busy_timeout_ms: int = env("SQLITE_BUSY_TIMEOUT_MS", 30_000, minimum=0)
    """How long SQLite waits for a writer's lock before failing, in milliseconds."""
