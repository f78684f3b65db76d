"""Bounded, thread-safe caches of the service: nothing here grows without bound.

* `NeighbourCache`: an LRU of per-movie neighbour lists, dropped whole when the vector collection's
  version changes (the version is compared at most every `check_seconds`, not per request).
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
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence


class NeighbourList(Sequence[tuple[str, float]]):
    """A compact, immutable neighbour list: interned ids in a tuple and similarities in a float32
    array (about 400 bytes for 20 neighbours instead of about 2 KB as a list of tuples), so a cache
    of the whole catalog stays small. Iterates as (movie_id, similarity) pairs."""

    __slots__ = ("_ids", "_sims")

    def __init__(self, pairs: Iterable[tuple[str, float]]):
        pairs = list(pairs)
        self._ids = tuple(sys.intern(str(movie_id)) for movie_id, _ in pairs)
        self._sims = array("f", (float(s) for _, s in pairs))

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(zip(self._ids[index], self._sims[index], strict=True))
        return self._ids[index], self._sims[index]

    def __iter__(self):
        return zip(self._ids, self._sims, strict=True)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return f"NeighbourList({list(self)!r})"


class NeighbourCache:
    """LRU movie id -> neighbour list, at most `max_size` entries, tied to one collection version."""

    def __init__(self, max_size: int, check_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, NeighbourList] = OrderedDict()
        self._version: str | None = None
        self._checked_at: float | None = None

    def __len__(self) -> int:
        return len(self._data)

    @property
    def version(self) -> str | None:
        """The collection version the cached lists belong to (None before the first check)."""
        return self._version

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
            self._data.clear()
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

    def put_many(self, lists: dict[str, NeighbourList]) -> None:
        """Store lists, evicting the least recently used beyond `max_size`."""
        with self._lock:
            for movie_id, value in lists.items():
                self._data[movie_id] = value
                self._data.move_to_end(movie_id)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
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
