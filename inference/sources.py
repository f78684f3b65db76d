"""The service's two dependencies behind small interfaces: the SQL store and the vector store.

`HistorySource` and `VectorSource` are Protocols so unit tests pass fakes; the real ones read SQL only
through `db_utils.queries` and vectors only through `embeddings.store.VectorStore`. Both open their
handles lazily, in the process that uses them (gunicorn workers fork before the first request).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from db_utils.queries import SEEN_SEPARATOR, recent_and_seen_dbapi

T = TypeVar("T")


@runtime_checkable
class HistorySource(Protocol):
    """What the service reads from the SQL store."""

    def recent_and_seen(self, user_id: int, recent: int, limit: int) -> tuple[list[tuple[str, float | None]],
                                                                              frozenset[str]]:
        """In one round trip: the user's `recent` most recent watched or rated movies, most recent first, as
        (movie_id, rating|None), and the ids of the whole history (at most `limit`), every one of which
        the answer excludes."""
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


@dataclass(frozen=True)
class _Held:
    """What one serving thread keeps between requests: its DBAPI connection and a cursor on it."""

    pid: int
    dialect: Any
    rollback: bool
    raw: Any
    cursor: Any


class SqlHistorySource:
    """`HistorySource` over `db_utils.queries`.

    `recent_and_seen` runs on the request path: each serving thread keeps one DBAPI connection of the
    engine's pool and runs the statement on it directly (`queries.recent_and_seen_dbapi`), in autocommit on
    servers so the read is one round trip and no transaction stays open. A connection that fails once is invalidated
    and the next call opens a fresh one. `popular` (once per TTL) uses a pooled Connection.
    """

    def __init__(self, url: str | None = None):
        self.url = url
        self._pid: int | None = None
        self._local = threading.local()

    def _engine(self) -> Any:
        from db_utils.engine import get_engine

        engine = get_engine(self.url)
        pid = os.getpid()
        if self._pid is not None and self._pid != pid:
            # Inherited across a fork: never reuse the parent's sockets or file handles.
            engine.dispose(close=False)
            self._local = threading.local()
        self._pid = pid
        return engine

    def _hold(self) -> _Held:
        """This thread's DBAPI connection (opened on first use in this process) and a cursor on it. On a
        server the connection is put in autocommit: a read is then its one round trip, with no BEGIN
        before it and no ROLLBACK after it, and no transaction stays open between requests."""
        engine = self._engine()
        raw = engine.raw_connection()
        rollback = engine.dialect.name != "sqlite"  # SQLite reads start no transaction; servers' do
        if rollback:
            try:
                raw.driver_connection.autocommit = True  # psycopg and pyodbc both have the attribute
                rollback = False
            except Exception:  # a driver without it: end each read with a rollback instead
                pass
        held = self._local.held = _Held(os.getpid(), engine.dialect, rollback, raw, raw.cursor())
        return held

    def _read(self, read: Callable[[Any, Any], T]) -> T:
        """`read(cursor, dialect)` on this thread's held connection (ended with a rollback where the driver
        has no autocommit); on failure the connection is invalidated and the next read opens a fresh one."""
        held = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._hold()
        try:
            out = read(held.cursor, held.dialect)
            if held.rollback:
                held.raw.rollback()
        except Exception:
            self._local.held = None
            with contextlib.suppress(Exception):
                held.raw.invalidate()
            raise
        return out

    def recent_and_seen(self, user_id: int, recent: int, limit: int) -> tuple[list[tuple[str, float | None]],
                                                                              frozenset[str]]:
        rows, seen = self._read(lambda cursor, dialect: recent_and_seen_dbapi(cursor, dialect, user_id, recent,
                                                                              limit))
        # the whole history as one string: split and hashed in C, no Python object per row beyond the ids
        return [(str(movie_id), rating) for movie_id, rating in rows], \
            frozenset(seen.split(SEEN_SEPARATOR)) if seen else frozenset()

    def popular(self, limit: int) -> list[tuple[str, int]]:
        from db_utils import queries

        with self._engine().connect() as conn:
            rows = queries.popular_movies(conn, limit=limit)
        return [(str(movie_id), int(count)) for movie_id, count in rows]


class BlendedVectors:
    """A `VectorSource` over several collections (MiniLM content vectors and collaborative item vectors):
    each movie's neighbours from every source with a non-zero weight, blended by
    `inference.ranking.blend_neighbours`. The service stays a pure vector search."""

    def __init__(self, sources: Sequence[tuple[float, VectorSource]]):
        self.sources = [(float(w), s) for w, s in sources if w]
        if not self.sources:
            raise ValueError("a blended vector store needs at least one source with a non-zero weight")

    @property
    def version(self) -> Any:
        return "+".join(str(source.version) for _, source in self.sources)

    def neighbours(self, movie_ids: Sequence[str], k: int) -> dict[str, list[tuple[str, float]]]:
        from inference.ranking import blend_neighbours

        return blend_neighbours([(w, source.neighbours(movie_ids, k)) for w, source in self.sources])

    def count(self) -> int:
        return max(int(source.count()) for _, source in self.sources)


def blended(rank: Any, content: VectorSource | None, collab: VectorSource | None) -> VectorSource:
    """The service's vector source for a ranking config: the content (MiniLM) and collaborative sources
    blended with `rank.content_weight` and `rank.collab_weight`; a missing source or a zero weight is left
    out. The one place that decides the blend, used by the service and by the gate's scoring."""
    sources: list[tuple[float, VectorSource]] = []
    if content is not None and rank.content_weight:
        sources.append((rank.content_weight, content))
    if collab is not None and rank.collab_weight:
        sources.append((rank.collab_weight, collab))
    return BlendedVectors(sources)


def open_content_store(settings: Any = None) -> VectorSource:
    """What the embedding job built (the MiniLM collection, CHROMA_COLLECTION): served until the training
    role has promoted a first version."""
    from embeddings.config import EmbeddingSettings
    from embeddings.store import VectorStore

    return VectorStore(settings or EmbeddingSettings.from_env())


def open_version_store(version: Any, rank: Any, settings: Any = None) -> VectorSource:
    """A model version's vectors: its content collection and its own collaborative collection, blended
    with its ranking config's weights (`version` is a `db_utils.model_versions.VersionRow`)."""
    import dataclasses

    from embeddings.config import EmbeddingSettings
    from embeddings.store import VectorStore

    base = settings or EmbeddingSettings.from_env()
    content = VectorStore(dataclasses.replace(base, collection=version.content_collection)) \
        if rank.content_weight else None
    collab = VectorStore(dataclasses.replace(base, collection=version.collab_collection)) \
        if rank.collab_weight and version.collab_collection else None
    return blended(rank, content, collab)




def open_vector_store(factory: str | None = None, settings: Any = None) -> VectorSource:
    """The unversioned vector store named by `factory` ("module:callable" called without arguments;
    default VECTOR_STORE_FACTORY), else the content collection the embedding job built, opened from
    `settings` (an `EmbeddingSettings`)."""
    spec = factory or os.environ.get("VECTOR_STORE_FACTORY")
    if not spec:
        return open_content_store(settings)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"VECTOR_STORE_FACTORY must look like module:callable, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    return target()
