"""Settings of the SQL store, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///data/recsys.db"


@dataclass(frozen=True)
class DbSettings:
    """Where the SQL store lives.

    url: SQLAlchemy URL from ``DATABASE_URL``; default ``sqlite:///data/recsys.db`` (relative to the working
        directory). PostgreSQL: ``postgresql+psycopg://user:pass@host/db``; Azure SQL / SQL Server:
        ``mssql+pyodbc://user:pass@host/db?driver=ODBC+Driver+18+for+SQL+Server``.
    busy_timeout_ms: how long SQLite waits for a writer's lock before failing (``SQLITE_BUSY_TIMEOUT_MS``).
    """

    url: str = DEFAULT_DATABASE_URL
    busy_timeout_ms: int = 30_000

    @classmethod
    def from_env(cls) -> DbSettings:
        return cls(
            url=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            busy_timeout_ms=int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "30000")),
        )
