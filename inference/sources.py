"""The service's two dependencies behind small interfaces: the SQL store and the vector store.

`HistorySource` and `VectorSource` are Protocols so unit tests pass fakes; the real ones read SQL only
through `db_utils.queries` and vectors only through `embeddings.store.VectorStore`. Both open their
handles lazily, in the process that uses them (gunicorn workers fork before the first request).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class HistorySource(Protocol):
    """What the service reads from the SQL store."""

    def history(self, user_id: int, limit: int) -> list[tuple[str, float | None]]:
        """The user's most recent watched or rated movies, most recent first, as (movie_id, rating|None)."""
        ...

    def popular(self, limit: int) -> list[tuple[str, int]]:
        """The most watched movies as (movie_id, distinct viewers), most popular first."""
        ...


@runtime_checkable
class VectorSource(Protocol):
    """The part of `embeddings.store.VectorStore` the service uses (it never encodes text itself)."""

    @property
    def version(self) -> Any:
        """Changes whenever the collection's vectors change."""
        ...

    def neighbours(self, movie_ids: Sequence[str], k: int) -> dict[str, list[tuple[str, float]]]:
        """The k nearest movies of each id (cosine similarity), in one batched query."""
        ...

    def count(self) -> int:
        """How many movies have a vector."""
        ...


class SqlHistorySource:
    """`HistorySource` over `db_utils.queries`, one short read transaction per call."""

    def __init__(self, url: str | None = None):
        self.url = url
        self._pid: int | None = None

    def _engine(self) -> Any:
        from db_utils.engine import get_engine

        engine = get_engine(self.url)
        pid = os.getpid()
        if self._pid is not None and self._pid != pid:
            # Inherited across a fork: never reuse the parent's sockets or file handles.
            engine.dispose(close=False)
        self._pid = pid
        return engine

    def history(self, user_id: int, limit: int) -> list[tuple[str, float | None]]:
        from db_utils import queries

        with self._engine().connect() as conn:
            rows = queries.user_history(conn, user_id, limit=limit)
        return [(str(row.movie_id), row.rating) for row in rows]

    def popular(self, limit: int) -> list[tuple[str, int]]:
        from db_utils import queries

        with self._engine().connect() as conn:
            rows = queries.popular_movies(conn, limit=limit)
        return [(str(movie_id), int(count)) for movie_id, count in rows]


DEFAULT_VECTOR_STORE = "embeddings.store:VectorStore"


def open_vector_store(factory: str | None = None) -> VectorSource:
    """The vector store named by `factory` ("module:callable"; default VECTOR_STORE_FACTORY, else the
    embeddings package's VectorStore, built from its own settings: CHROMA_PATH or CHROMA_HOST)."""
    spec = factory or os.environ.get("VECTOR_STORE_FACTORY") or DEFAULT_VECTOR_STORE
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"VECTOR_STORE_FACTORY must look like module:callable, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    return target()
