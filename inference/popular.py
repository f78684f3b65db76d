"""The popular list the service answers from when it has nothing better: held in memory, normalized
once per list, reloaded in the background when stale. One job: keep a good list at hand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from inference.cache import PopularCache
from inference.ranking import NormalizedPopularity, normalize_popularity


class PopularList:
    """`current()` is the held list, normalized; a failing reload keeps the last good one (possibly
    empty) and reports the failure to `on_error`.

    While no list is held it is loaded inline. Once one is, a stale list is reloaded by one background
    thread and requests keep serving the held one meanwhile: the popular query scans `watched` (50 to
    120 ms on a 1M-user SQLite store), too slow for the request that happens to find it stale."""

    def __init__(self, cache: PopularCache, load: Callable[[], Sequence[tuple[str, int]]],
                 on_error: Callable[[BaseException], None]):
        self.cache = cache
        self._load = load
        self._on_error = on_error
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._normalized: tuple[list[tuple[str, int]], NormalizedPopularity] | None = None

    @property
    def items(self) -> list[tuple[str, int]]:
        """The held (movie id, viewers) list, most popular first."""
        return self.cache.items

    def current(self) -> NormalizedPopularity:
        """The held list, normalized (loaded inline when none is held; refreshed in the background when
        stale)."""
        if not self.cache.items:
            self.load_now()
        elif self.cache.stale():
            self.refresh_in_background()
        items = self.cache.items
        cached = self._normalized
        if cached is None or cached[0] is not items:
            cached = self._normalized = (items, normalize_popularity(items))
        return cached[1]

    def load_now(self) -> None:
        """Reload now if stale; a store failure goes to `on_error`, never raised."""
        try:
            self.cache.get(self._load)
        except Exception as exc:  # any store failure means: serve what we hold
            self._on_error(exc)

    def refresh_in_background(self) -> None:
        """Start one reload thread unless one is running already."""
        with self._lock:
            if self.thread is not None and self.thread.is_alive():
                return
            self.thread = threading.Thread(target=self.load_now, name="popular-refresh", daemon=True)
            self.thread.start()
