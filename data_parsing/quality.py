"""Data quality and drift of the stream (pure): per-window statistics, compared with a reference window.

A window is a fixed span of EVENT time (`window_seconds`, default 300 s): `floor(ts / window)`, so a
replayed file and a live stream are cut the same way, and the store's times give the same windows. An
event later than its window's end opens the next window (the previous one closes); a late event (older
than the open window) counts in the open window. Rejected lines have no trustworthy time: they count in
the window open when their batch was applied.

Statistics of a window (`Window`), one distribution per feature:

- `line_rate`: lines (events and rejects) per second of event time;
- `rejected`: the share of each rejection reason, beside "ok" for valid lines;
- `unknown_user`, `unknown_movie`: of the distinct users (movies) of the window, new ones (never seen
  before the window: by this parser, or in the store it was seeded from) against known ones;
- `rating`: the rating distribution 1..5;
- `watch_minute`: watched minutes in `MINUTE_BINS`;
- `latency`: recommendation-request latency in `LATENCY_BINS_MS`;
- `status`: recommendation-request status classes (2xx, 4xx, 5xx, other).

Comparison (`compare`): each distribution against the reference window's by the population stability
index, PSI = sum_i (p_i - q_i) ln(p_i / q_i), computed as the symmetric Kullback-Leibler divergence with
`scipy.special.rel_entr` over counts smoothed by half an observation a bin (so an empty bin is finite).
Documented thresholds (the usual reading of PSI): below `MODERATE` (0.1) no drift; `MODERATE` to `STRONG`
(0.25) moderate drift, watch it; above `STRONG` strong drift, the `StreamDrift` alert fires. The line rate
has no distribution: its score is |log10(rate / reference rate)|, on the same scale (0.25: the rate moved by
a factor of 1.8 either way). A feature with fewer than `min_count` observations in either window gets no
score (None): a window without ratings says nothing about ratings. Sampling noise alone gives two samples
of n observations over k bins a PSI of about 2(k - 1)/n: 0.09 for 10 bins of 200, hence the default
`min_count` of 200 and windows long enough to hold thousands of events.

The reference window is the first window with at least `min_count` lines (by default; `reference` can be
given). A reference in which no user (movie) was known yet, the first window on an empty store, gives no
`unknown_user` (`unknown_movie`) score: a cold start is no baseline for the share of newcomers. The live
parser seeds the known ids from the store at start, so a restarted parser keeps the score.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
from scipy.special import rel_entr

from data_parsing.parser import REASONS, Event, RateEvent, WatchEvent

MODERATE = 0.1
STRONG = 0.25
DEFAULT_WINDOW_SECONDS = 300.0
DEFAULT_MIN_COUNT = 200
MINUTE_BINS = (0, 5, 10, 20, 30, 45, 60, 90, 120, 180)  # lower edges, minutes
LATENCY_BINS_MS = (0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)  # lower edges, milliseconds
STATUS_CLASSES = ("2xx", "4xx", "5xx", "other")
FEATURES = ("line_rate", "rejected", "unknown_user", "unknown_movie", "rating", "watch_minute", "latency", "status")
_EPOCH = datetime(1970, 1, 1)
_CATEGORIES: dict[str, tuple] = {
    "rejected": ("ok", *REASONS),
    "unknown_user": ("new", "known"),
    "unknown_movie": ("new", "known"),
    "rating": (1, 2, 3, 4, 5),
    "watch_minute": MINUTE_BINS,
    "latency": LATENCY_BINS_MS,
    "status": STATUS_CLASSES,
}


def status_class(status: int) -> str:
    """2xx, 4xx, 5xx or other (0 is the simulator's timeout)."""
    return {2: "2xx", 4: "4xx", 5: "5xx"}.get(status // 100, "other")


def bin_of(edges: tuple[int, ...], value: float) -> int:
    """The lower edge of the bin holding `value` (values below the first edge go to the first bin)."""
    return edges[max(0, bisect.bisect_right(edges, value) - 1)]


def binned(edges: tuple[int, ...], values: Sequence[float]) -> Counter:
    """Counts of `values` by the lower edge of their bin (`bin_of` for many values at once)."""
    if not values:
        return Counter()
    index = np.searchsorted(np.asarray(edges), np.asarray(values), side="right") - 1
    counts = np.bincount(np.maximum(index, 0), minlength=len(edges))
    return Counter({edge: int(n) for edge, n in zip(edges, counts, strict=True) if n})


_Id = TypeVar("_Id", bound=Hashable)


def _remember(known: set[_Id], new: set[_Id], max_known: int) -> None:
    """Add `new` ids to `known` while it holds fewer than `max_known` (memory stays bounded)."""
    room = max_known - len(known)
    known.update(new if len(new) <= room else list(new)[:max(0, room)])


@dataclass
class Window:
    """The statistics of one window of event time; `start` is its first instant (naive UTC)."""

    start: datetime
    seconds: float  # of event time the window was observed (the stream's first window: from its first event)
    lines: int = 0
    rejected: Counter = field(default_factory=Counter)
    unknown_user: Counter = field(default_factory=Counter)
    unknown_movie: Counter = field(default_factory=Counter)
    rating: Counter = field(default_factory=Counter)
    watch_minute: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)

    @property
    def line_rate(self) -> float:
        """Lines per second of event time."""
        return self.lines / self.seconds

    def to_dict(self) -> dict:
        """A JSON-ready summary (the `quality` command prints it)."""
        out: dict = {"start": self.start.isoformat(), "seconds": self.seconds, "lines": self.lines,
                     "line_rate": round(self.line_rate, 6)}
        for name in _CATEGORIES:
            counts = getattr(self, name)
            out[name] = {str(k): counts[k] for k in _CATEGORIES[name] if counts.get(k)}
        return out


def psi(reference: Mapping, current: Mapping, categories: Iterable) -> float:
    """Population stability index of two count tables over `categories` (half a count added a bin)."""
    cats = list(categories)
    p = np.array([current.get(c, 0) for c in cats], dtype=float) + 0.5
    q = np.array([reference.get(c, 0) for c in cats], dtype=float) + 0.5
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(rel_entr(p, q) + rel_entr(q, p)))


def compare(reference: Window, current: Window, min_count: int = DEFAULT_MIN_COUNT) -> dict[str, float | None]:
    """Each feature's drift score of `current` against `reference` (None: too few observations)."""
    scores: dict[str, float | None] = {}
    if reference.lines >= min_count and current.lines >= min_count:
        scores["line_rate"] = abs(float(np.log10(current.line_rate / reference.line_rate)))
    else:
        scores["line_rate"] = None
    for name, categories in _CATEGORIES.items():
        ref, cur = getattr(reference, name), getattr(current, name)
        enough = sum(ref.values()) >= min_count and sum(cur.values()) >= min_count
        if name.startswith("unknown_") and not ref.get("known"):
            enough = False  # a cold-start reference (nothing known yet) says nothing about later shares
        scores[name] = psi(ref, cur, categories) if enough else None
    return scores


def window_start(ts: datetime, seconds: float) -> datetime:
    """The start of the window of `seconds` holding `ts` (windows are aligned on the unix epoch)."""
    index = (ts - _EPOCH) // timedelta(seconds=seconds)
    return _EPOCH + index * timedelta(seconds=seconds)


class WindowTracker:
    """Cuts a stream of batches into windows, keeps the reference, and scores every window that closes.

    `known_users`/`known_movies` seed what counts as known (the store's ids at start); they grow with the
    stream up to `max_known` ids each (beyond it new ids are no longer remembered, so memory stays bounded
    and a few returning users may count as new)."""

    def __init__(self, seconds: float = DEFAULT_WINDOW_SECONDS, min_count: int = DEFAULT_MIN_COUNT,
                 known_users: Iterable[int] = (), known_movies: Iterable[str] = (), max_known: int = 5_000_000,
                 reference: Window | None = None) -> None:
        if seconds <= 0:
            raise ValueError(f"the quality window must be a positive number of seconds, got {seconds}")
        self.seconds = seconds
        self.min_count = min_count
        self.max_known = max_known
        self.reference = reference
        self.known_users: set[int] = set(known_users)
        self.known_movies: set[str] = set(known_movies)
        self.current: Window | None = None
        self._reset()
        self._end: datetime | None = None
        self._started = False

    def _reset(self) -> None:
        """The open window's raw observations: distinct ids, and values binned only when it closes (an
        append a value keeps the per-event cost of the statistics small beside parsing)."""
        self._users: set[int] = set()
        self._movies: set[str] = set()
        self._minutes: list[int] = []
        self._ratings: list[int] = []
        self._latencies: list[float] = []
        self._statuses: list[int] = []
        self._events = 0

    def observe(self, events: Iterable[Event], rejected: Mapping[str, int] | None = None
                ) -> list[tuple[Window, dict[str, float | None]]]:
        """Add one batch (events in stream order, rejection counts by reason); return each window that
        closed, with its scores against the reference (empty scores while there is no reference)."""
        closed: list[tuple[Window, dict[str, float | None]]] = []
        window, end = self.current, self._end
        add_user, add_movie = self._users.add, self._movies.add
        minutes, ratings = self._minutes.append, self._ratings.append
        latencies, statuses = self._latencies.append, self._statuses.append
        count = 0
        for event in events:
            ts = event.ts
            if window is None or ts >= end:  # type: ignore[operator]
                if window is not None:
                    self._events += count
                    closed.append(self._close())
                window, end = self.open_at(ts)
                add_user, add_movie = self._users.add, self._movies.add
                minutes, ratings = self._minutes.append, self._ratings.append
                latencies, statuses = self._latencies.append, self._statuses.append
                count = 0
            count += 1
            add_user(event.user_id)
            if type(event) is WatchEvent:
                add_movie(event.movie_id)
                minutes(event.minute)
            elif type(event) is RateEvent:
                add_movie(event.movie_id)
                ratings(event.rating)
            else:
                latencies(event.latency_ms)
                statuses(event.status)
        self._events += count
        if rejected and window is not None:
            for reason, n in rejected.items():
                window.rejected[reason] += n
                window.lines += n
        return closed

    def open_at(self, ts: datetime) -> tuple[Window, datetime]:
        """Open the window holding `ts` (the open one must be closed first); the window and its end."""
        start = window_start(ts, self.seconds)
        # the stream's first window is seen from its first event on, every later one whole
        seen = self.seconds - (ts - start).total_seconds() if not self._started else self.seconds
        self.current = Window(start, max(seen, 1e-3))
        self._end = start + timedelta(seconds=self.seconds)
        self._started = True
        return self.current, self._end

    def flush(self) -> tuple[Window, dict[str, float | None]] | None:
        """Close the open window (the stream ended); its scores, or None when no window is open."""
        return self._close() if self.current is not None else None

    def _close(self) -> tuple[Window, dict[str, float | None]]:
        window = self.current
        assert window is not None
        window.lines += self._events
        window.rejected["ok"] += self._events
        window.watch_minute.update(binned(MINUTE_BINS, self._minutes))
        window.latency.update(binned(LATENCY_BINS_MS, self._latencies))
        window.rating.update(self._ratings)
        for status, n in Counter(self._statuses).items():
            window.status[status_class(status)] += n
        new_users = self._users - self.known_users
        new_movies = self._movies - self.known_movies
        window.unknown_user.update({"new": len(new_users), "known": len(self._users) - len(new_users)})
        window.unknown_movie.update({"new": len(new_movies), "known": len(self._movies) - len(new_movies)})
        _remember(self.known_users, new_users, self.max_known)
        _remember(self.known_movies, new_movies, self.max_known)
        self.current, self._end = None, None
        self._reset()
        if self.reference is None and window.lines >= self.min_count:
            self.reference = window
            return window, {}
        return window, compare(self.reference, window, self.min_count) if self.reference else {}


def strongest(scores: Mapping[str, float | None]) -> tuple[str, float] | None:
    """The feature with the highest score, or None when nothing was scored."""
    scored = [(name, s) for name, s in scores.items() if s is not None]
    return max(scored, key=lambda item: item[1]) if scored else None


def verdict(score: float | None) -> str:
    """'none', 'moderate' or 'strong' by the documented thresholds ('unknown' without a score)."""
    if score is None:
        return "unknown"
    return "strong" if score > STRONG else "moderate" if score > MODERATE else "none"


def windows_from_store(rows: Mapping[str, list[tuple]], seconds: float = DEFAULT_WINDOW_SECONDS,
                       min_count: int = DEFAULT_MIN_COUNT) -> list[tuple[Window, dict[str, float | None]]]:
    """The same windows and scores from what the store keeps (`db_utils.queries.stream_quality_rows`).

    The store keeps less than the stream carried, so four features read differently (and consistently
    from window to window, which is what a comparison needs): a watched (user, movie) pair counts once,
    at its last minute's time, with its furthest minute; only the latest rating of a pair remains; the
    rejected lines are the stored sample, at the time they were stored; the line rate counts stored rows.
    New users and movies are those whose first appearance in the store falls in the window."""
    from data_parsing.parser import RecommendationEvent

    events: list[tuple[datetime, Event]] = []
    events += [(ts, WatchEvent(ts, u, m, minute)) for u, m, minute, ts in rows["watched"]]
    events += [(ts, RateEvent(ts, u, m, r)) for u, m, r, ts in rows["ratings"]]
    events += [(ts, RecommendationEvent(ts, u, "", status, (), latency)) for u, ts, status, latency in rows["served"]]
    events.sort(key=lambda pair: pair[0])
    by_window: dict[datetime, list[Event]] = {}
    for ts, event in events:
        by_window.setdefault(window_start(ts, seconds), []).append(event)
    rejects: dict[datetime, Counter] = {}
    for reason, ts in rows["rejected"]:
        rejects.setdefault(window_start(ts, seconds), Counter())[reason] += 1
    first_user = dict(rows["user_first"])
    first_movie = dict(rows["movie_first"])
    tracker = WindowTracker(seconds, min_count)
    out: list[tuple[Window, dict[str, float | None]]] = []
    for start in sorted(set(by_window) | set(rejects)):
        window_events = by_window.get(start, [])
        earlier = datetime.min  # first appearance before `since`: known
        tracker.known_users.update(e.user_id for e in window_events if first_user.get(e.user_id, earlier) < start)
        tracker.known_movies.update(m for e in window_events if (m := getattr(e, "movie_id", None)) is not None
                                    and first_movie.get(m, earlier) < start)
        tracker.open_at(start)
        out += tracker.observe(window_events, rejects.get(start))
        closed = tracker.flush()
        if closed is not None:
            out.append(closed)
    return out


def report(windows: list[tuple[Window, dict[str, float | None]]], since: datetime, seconds: float,
           min_count: int) -> dict:
    """The JSON document of `python -m data_parsing quality`: thresholds, the reference, every window."""
    reference = next((w for w, scores in windows if not scores and w.lines >= min_count), None)
    scored = []
    for window, scores in windows:
        top = strongest(scores)
        scored.append({**window.to_dict(), "scores": {k: None if v is None else round(v, 6) for k, v in scores.items()},
                       "strongest": top[0] if top else None, "drift": verdict(top[1] if top else None)})
    worst = max((s for w in scored for s in w["scores"].values() if s is not None), default=None)
    return {"since": since.isoformat(), "window_seconds": seconds, "min_count": min_count,
            "method": "PSI over smoothed counts; line_rate: |log10 of the rate ratio|",
            "thresholds": {"moderate": MODERATE, "strong": STRONG},
            "reference": reference.start.isoformat() if reference else None,
            "drift": verdict(worst), "windows": scored}
