"""Engines for the SQL store: one per URL per process, tuned per dialect."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from db_utils.config import DbSettings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def create(url: str | None = None, settings: DbSettings | None = None) -> Engine:
    """Create a new engine: SQLite in WAL mode with a busy timeout and foreign keys on; the parent directory
    of a SQLite file is created. Other dialects get pre-ping so a restarted server is survived."""
    settings = settings or DbSettings.from_env()
    url = url or settings.url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": settings.busy_timeout_ms / 1000})
        event.listen(engine, "connect", _sqlite_pragmas(settings.busy_timeout_ms))
        return engine
    kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "mssql":
        kwargs["fast_executemany"] = True
    return create_engine(url, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``DATABASE_URL``), created on first use."""
    url = url or DbSettings.from_env().url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create(url)
        return engine


def dispose_all() -> None:
    """Drop every cached engine (after a fork, or between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
