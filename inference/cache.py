"""Bounded, thread-safe caches of the service: nothing here grows without bound.

* `NeighbourCache`: an LRU of per-movie neighbour lists of one model version, bounded in entries and in
  bytes (NEIGHBOUR_CACHE_BYTES), dropped whole when the vector collection's version changes (the version
  is compared at most every `check_seconds`, not per request). Its lists hold int32 indices into the
  cache's `IdTable` (one `sys.intern`ed string per movie) and float32 similarities, so the ranking scores
  them with NumPy (`inference.ranking.rank_arrays`) instead of a Python loop per pair.
* `PopularCache`: the popular list with a TTL; the last good list stays in memory as the fallback
  answer when the SQL store or ChromaDB fails.

The clock is injected so tests can move time without sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# Estimated bytes per movie id in an IdTable beyond the string itself: its dict slot and hash entry, its
# list slot and its int index (CPython 3.11+, 64-bit).
_ID_OVERHEAD = 100
# Estimated bytes per cached list beyond its two arrays: the NeighbourList object and its OrderedDict
# entry (key reference, links, hash slot).
_ENTRY_OVERHEAD = 160


class IdTable:
    """Movie id <-> int index for one model version: every id is stored once (interned), lists hold
    int32 indices (the ids of its lists, and of the popular list the ranking scores against them).
    Append-only; thread-safe. Replaced whole (never shrunk) when its cache is cleared."""

    __slots__ = ("_id_bytes", "_lock", "ids", "index", "memo")

    def __init__(self) -> None:
        self.memo: dict[Any, Any] = {}  # the ranking's per-table arrays (inference.ranking._PopularView)
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._id_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Estimated bytes held: the ids (strings, dict and list slots) and the ranking's arrays in `memo`
        (each value's own `nbytes`)."""
        return self._id_bytes + sum(getattr(v, "nbytes", 0) for v in list(self.memo.values()))

    def indices_of(self, movie_ids: Iterable[str]) -> np.ndarray:
        """The int32 indices of these ids, adding the unknown ones."""
        index = self.index
        out: list[int] = []
        with self._lock:
            for movie_id in movie_ids:
                i = index.get(movie_id)
                if i is None:
                    movie_id = sys.intern(str(movie_id))
                    i = index[movie_id] = len(self.ids)
                    self.ids.append(movie_id)
                    self._id_bytes += sys.getsizeof(movie_id) + _ID_OVERHEAD
                out.append(i)
        return np.array(out, dtype=np.int32)


class NeighbourList(Sequence[tuple[str, float]]):
    """A compact, immutable neighbour list: `indices` (int32 into `table`) and `similarities` (float32),
    about 500 bytes for 40 neighbours instead of about 4 KB as a list of tuples. Iterates as
    (movie_id, similarity) pairs, so the reference `rank` reads it as it reads plain lists."""

    __slots__ = ("indices", "similarities", "table")

    def __init__(self, pairs: Iterable[tuple[str, float]], table: IdTable | None = None):
        pairs = list(pairs)
        self.table = table if table is not None else IdTable()
        self.indices = self.table.indices_of(movie_id for movie_id, _ in pairs)
        self.similarities = np.array([float(s) for _, s in pairs], dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Estimated bytes held by this list (its arrays and its cache entry; the ids are the table's)."""
        return sys.getsizeof(self.indices) + sys.getsizeof(self.similarities) + _ENTRY_OVERHEAD

    def ids(self) -> list[str]:
        ids = self.table.ids
        return [ids[i] for i in self.indices.tolist()]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return list(self)[index]

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return zip(self.ids(), self.similarities.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return f"NeighbourList({list(self)!r})"


class NeighbourCache:
    """LRU movie id -> neighbour list of one model version, tied to one collection version: at most
    `max_size` lists and about `max_bytes` bytes (lists plus the id table; see `nbytes`)."""

    def __init__(self, max_size: int, check_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, max_bytes: int = 64 * 1024 * 1024):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, NeighbourList] = OrderedDict()
        self._list_bytes = 0
        self.table = IdTable()
        self._version: str | None = None
        self._checked_at: float | None = None

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Estimated bytes held: every cached list's arrays and entry, plus the id table."""
        return self._list_bytes + self.table.nbytes

    @property
    def version(self) -> str | None:
        """The collection version the cached lists belong to (None before the first check)."""
        return self._version

    def _drop_all(self) -> None:
        """Forget every list and start a new id table (caller holds the lock)."""
        self._data.clear()
        self._list_bytes = 0
        self.table = IdTable()

    def check_version(self, fetch_version: Callable[[], str]) -> bool:
        """Compare the collection version when `check_seconds` passed since the last look.

        Drops every entry when it changed. Returns True when the cache was dropped. An exception from
        `fetch_version` propagates (the caller falls back) and the next call looks again.
        """
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.check_seconds:
            return False
        version = str(fetch_version())
        with self._lock:
            self._checked_at = now
            if version == self._version:
                return False
            dropped = self._version is not None
            self._version = version
            self._drop_all()
            return dropped

    def get_many(self, movie_ids: Iterable[str]) -> tuple[dict[str, NeighbourList], list[str]]:
        """(cached lists, ids missing from the cache); hits move to the recent end."""
        found: dict[str, NeighbourList] = {}
        missing: list[str] = []
        with self._lock:
            for movie_id in movie_ids:
                value = self._data.get(movie_id)
                if value is None:
                    missing.append(movie_id)
                else:
                    self._data.move_to_end(movie_id)
                    found[movie_id] = value
        return found, missing

    def put_many(self, lists: Mapping[str, Iterable[tuple[str, float]]]) -> dict[str, NeighbourList]:
        """Pack lists over this cache's id table and store them, evicting the least recently used beyond
        `max_size` lists or `max_bytes`; returns the packed lists. When the id table alone passes half of
        `max_bytes` (ids of evicted lists stay in it), everything is dropped and a new table started."""
        table = self.table
        packed = {m: v if isinstance(v, NeighbourList) and v.table is table else NeighbourList(v, table)
                  for m, v in lists.items()}
        with self._lock:
            if self.table is not table:  # dropped meanwhile: the lists serve this request only
                return packed
            data = self._data
            for movie_id, value in packed.items():
                old = data.pop(movie_id, None)
                if old is not None:
                    self._list_bytes -= old.nbytes
                data[movie_id] = value
                self._list_bytes += value.nbytes
            while data and (len(data) > self.max_size or self.nbytes > self.max_bytes):
                _, evicted = data.popitem(last=False)
                self._list_bytes -= evicted.nbytes
            if self.table.nbytes > self.max_bytes // 2:
                self._drop_all()
        return packed

    def clear(self) -> None:
        with self._lock:
            self._drop_all()
            self._checked_at = None


class PopularCache:
    """The popular list (movie id, viewers), reloaded after `ttl_seconds`; the last good one survives.

    With `snapshot_path`, every changed list is also written to that JSON file (atomically) and read
    back at start, so a worker that starts while the store is down still has a list to serve.
    """

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic,
                 snapshot_path: str | None = None):
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.snapshot_path = snapshot_path
        self._items: list[tuple[str, int]] = read_snapshot(snapshot_path) if snapshot_path else []
        self._loaded_at: float | None = None
        self._failed_at: float | None = None
        self.last_error: str | None = None

    @property
    def items(self) -> list[tuple[str, int]]:
        """The last good list (empty until a load succeeds)."""
        return self._items

    def stale(self) -> bool:
        """True when the list was never loaded or is older than the TTL."""
        return self._loaded_at is None or self._clock() - self._loaded_at >= self.ttl_seconds

    def get(self, load: Callable[[], Sequence[tuple[str, int]]]) -> list[tuple[str, int]]:
        """The list, reloaded through `load` when stale.

        A failing load keeps the previous list, records `last_error`, and re-raises so the caller can
        count the fallback. After a failure the load is retried at most once per TTL (or every second
        while no list was ever loaded), and meanwhile the last good list is returned, so a dead store
        is not hammered by every request.
        """
        if not self.stale():
            return self._items
        now = self._clock()
        retry_after = self.ttl_seconds if self._items else min(1.0, self.ttl_seconds)
        if self._failed_at is not None and now - self._failed_at < retry_after:
            return self._items
        try:
            fresh = [(str(movie_id), int(count)) for movie_id, count in load()]
        except Exception as exc:
            with self._lock:
                self._failed_at = now
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            raise
        with self._lock:
            changed = fresh != self._items
            self._items = fresh
            self._loaded_at = now
            self._failed_at = None
            self.last_error = None
        if changed and self.snapshot_path and fresh:
            write_snapshot(self.snapshot_path, fresh)
        return fresh


def read_snapshot(path: str) -> list[tuple[str, int]]:
    """The popular list saved at path, or [] when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [(str(movie_id), int(count)) for movie_id, count in json.load(fh)]
    except (OSError, ValueError, TypeError):
        return []


def write_snapshot(path: str, items: list[tuple[str, int]]) -> None:
    """Save the popular list atomically (a temp file renamed over the old one); errors are ignored,
    the snapshot is only a help for the next start."""
    tmp: str | None = None
    try:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".popular-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(items, fh)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
