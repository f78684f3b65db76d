"""Stream quality and drift on plain data: no drift, a shifted rating distribution, a burst of rejects."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from data_parsing.parser import WatchEvent
from data_parsing.quality import (
    MODERATE,
    STRONG,
    Window,
    WindowTracker,
    bin_of,
    binned,
    compare,
    psi,
    status_class,
    verdict,
    window_start,
)
from tests.fixtures.drift_streams import SHIFTED_RATINGS, T0, stream

WINDOW = 60.0


def run(events: list, batch: int = 97, rejected_every: dict[str, int] | None = None, **kwargs) -> list:
    """Feed the events in batches (with a burst of rejects per batch in the windows named); closed windows."""
    tracker = WindowTracker(WINDOW, min_count=200, known_users=range(400), known_movies=[f"m+{i}" for i in range(300)],
                            **kwargs)
    closed = []
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        rejects = (rejected_every or {}).get(window_start(chunk[-1].ts, WINDOW).minute, 0)
        closed += tracker.observe(chunk, {"bad_time": rejects} if rejects else None)
    last = tracker.flush()
    return closed + ([last] if last else [])


def test_no_drift_scores_stay_under_the_moderate_threshold() -> None:
    closed = run(stream(6, 1500))
    assert len(closed) == 6
    assert closed[0][1] == {}  # the first full window is the reference
    for window, scores in closed[1:]:
        assert window.lines == 1500
        scored = {k: v for k, v in scores.items() if v is not None}
        assert set(scored) == {"line_rate", "rejected", "unknown_user", "unknown_movie", "rating", "watch_minute",
                               "latency", "status"}
        assert max(scored.values()) < MODERATE, scores


def test_shifted_rating_distribution_is_strong_drift_on_rating_only() -> None:
    closed = run(stream(3, 1500) + stream(3, 1500, ratings=SHIFTED_RATINGS, seed=2, start=3))
    before, after = [s for _, s in closed[1:3]], [s for _, s in closed[3:]]
    assert all(s["rating"] < MODERATE for s in before)
    for scores in after:
        assert scores["rating"] > STRONG
        assert verdict(scores["rating"]) == "strong"
        assert all(v < MODERATE for k, v in scores.items() if k != "rating" and v is not None), scores


def test_burst_of_rejects_is_strong_drift_on_rejected_and_rate() -> None:
    burst = {T0.minute + 4: 400}  # window 4: 400 rejected lines a batch
    closed = run(stream(6, 1500), rejected_every=burst)
    by_minute = {w.start.minute - T0.minute: (w, s) for w, s in closed}
    window, scores = by_minute[4]
    assert window.rejected["bad_time"] > 0 and window.lines > 1500
    assert scores["rejected"] > STRONG
    assert scores["line_rate"] > MODERATE
    assert by_minute[5][1]["rejected"] < MODERATE  # the burst is over


def test_unknown_users_and_latency_and_status_shifts_are_seen() -> None:
    closed = run(stream(2, 1500) + stream(2, 1500, seed=3, start=2, users=5000, latency=400.0, status=500))
    scores = closed[-1][1]
    assert scores["unknown_user"] > STRONG and scores["latency"] > STRONG and scores["status"] > STRONG


def test_sparse_feature_gets_no_score_and_late_events_count_in_the_open_window() -> None:
    events = [WatchEvent(T0 + timedelta(seconds=i * 0.1), 1, "m", 3) for i in range(100)]  # twice: 200
    events.append(WatchEvent(T0, 1, "m", 3))  # late: counts in the open window
    closed = run(events * 2 + [WatchEvent(T0 + timedelta(seconds=WINDOW * 2), 1, "m", 3)] * 300)
    assert closed[0][0].lines == 202
    assert closed[1][1]["rating"] is None and closed[1][1]["watch_minute"] is not None


def test_known_ids_are_bounded() -> None:
    tracker = WindowTracker(WINDOW, min_count=1, max_known=10)
    tracker.observe([WatchEvent(T0, u, f"m{u}", 1) for u in range(50)])
    tracker.flush()
    assert len(tracker.known_users) == 10 and len(tracker.known_movies) == 10


def test_psi_and_helpers() -> None:
    same = Counter({1: 100, 2: 100})
    assert psi(same, same, (1, 2)) == pytest.approx(0.0)
    assert psi(Counter({1: 100}), Counter({2: 100}), (1, 2)) > 5
    assert psi(Counter({1: 10, 2: 90}), Counter({1: 90, 2: 10}), (1, 2)) == pytest.approx(
        psi(Counter({1: 90, 2: 10}), Counter({1: 10, 2: 90}), (1, 2)))  # symmetric
    assert [bin_of((0, 5, 10), v) for v in (-1, 0, 4.9, 5, 1e9)] == [0, 0, 0, 5, 10]
    assert binned((0, 5, 10), [-1, 0, 4.9, 5, 1e9]) == Counter({0: 3, 5: 1, 10: 1})
    assert [status_class(s) for s in (200, 204, 404, 503, 0, 302)] == ["2xx", "2xx", "4xx", "5xx", "other", "other"]
    assert window_start(datetime(2026, 1, 1, 0, 7, 30), 300) == datetime(2026, 1, 1, 0, 5)
    assert verdict(None) == "unknown" and verdict(0.05) == "none" and verdict(0.2) == "moderate"
    empty = Window(T0, WINDOW)
    assert all(v is None for v in compare(empty, empty).values())
    with pytest.raises(ValueError, match="positive"):
        WindowTracker(0)


def test_cold_start_reference_gives_no_unknown_scores() -> None:
    tracker = WindowTracker(WINDOW, min_count=200)  # nothing known: the first window is all newcomers
    closed = tracker.observe(stream(3, 1500))
    assert closed[1][1]["unknown_user"] is None and closed[1][1]["unknown_movie"] is None
    assert closed[1][0].unknown_user["known"] > 0 and closed[1][1]["rating"] is not None
