"""evaluation.experiments.arms on hand-built plain data: users as units, online.py's conversion rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from evaluation import online
from evaluation.experiments.arms import activity_from_events, arm_metrics, user_outcomes

T0 = datetime(2026, 3, 1, 10, 0, 0)
H = timedelta(hours=1)


def answer(user, ts, arm, ids, latency=10.0, fallback=False, status=200, version=None):
    return {"user_id": user, "ts": ts, "arm": arm, "model_version": version or {"c": "v1", "t": "v2"}[arm],
            "movie_ids": ids, "latency_ms": latency, "fallback": fallback, "status": status}


def store():
    """By hand (24 h window, judged as of T0 + 4 days):
    control c: u1 two lists, watches b of the second 2 h later for 30 min, rates it 4 -> converted, 30 min, 4
               u2 [c, d], watches c 30 h later (outside the window)             -> not converted
               u3 [e], had started e before the list                             -> not converted
    treatment t: u4 [f, g], watches g 1 h later for 50 min, unrated, a fallback   -> converted, 50 min
                 u5 a 500 with no ids only                                        -> served, not judged
                 u6 [h] at T0 + 3.5 d: window still open                           -> served, not judged
                 u7 served by both arms                                           -> left out of both
    """
    served = [
        answer(1, T0, "c", ["a"], latency=5), answer(1, T0 + 2 * H, "c", ["b", "a"], latency=7),
        answer(2, T0, "c", ["c", "d"], latency=9), answer(3, T0, "c", ["e"], latency=100),
        answer(4, T0, "t", ["f", "g"], latency=20, fallback=True), answer(5, T0, "t", [], latency=1, status=500),
        answer(6, T0 + timedelta(days=3, hours=12), "t", ["h"], latency=30),
        answer(7, T0, "c", ["x"]), answer(7, T0 + H, "t", ["x"]),
    ]
    watched = [
        {"user_id": 1, "movie_id": "b", "first_ts": T0 + 4 * H, "max_minute": 30},
        {"user_id": 2, "movie_id": "c", "first_ts": T0 + 30 * H, "max_minute": 90},
        {"user_id": 3, "movie_id": "e", "first_ts": T0 - H, "max_minute": 10},
        {"user_id": 4, "movie_id": "g", "first_ts": T0 + H, "max_minute": 50},
        {"user_id": 7, "movie_id": "x", "first_ts": T0 + 2 * H, "max_minute": 5},
    ]
    ratings = [{"user_id": 1, "movie_id": "b", "rating": 4}, {"user_id": 2, "movie_id": "c", "rating": 1}]
    return served, watched, ratings


def test_per_arm_metrics_by_hand():
    served, watched, ratings = store()
    report = arm_metrics(served, watched, ratings, as_of=T0 + timedelta(days=4), arms=["c", "t"])
    assert report["users_in_several_arms"] == 1
    c, t = report["arms"]["c"], report["arms"]["t"]
    assert (c["users"], c["judged_users"], c["converted_users"]) == (3, 3, 1)
    assert c["conversion_rate"] == pytest.approx(1 / 3)
    assert c["mean_watch_minutes"] == pytest.approx(10.0) and c["mean_rating"] == 4.0 and c["rated_users"] == 1
    assert (t["users"], t["judged_users"], t["converted_users"], t["conversion_rate"]) == (3, 1, 1, 1.0)
    assert t["mean_watch_minutes"] == 50.0 and t["mean_rating"] is None
    # answers count everything the arm served, u7's too
    assert (c["answers"], t["answers"]) == (5, 4)
    assert t["fallback_share"] == 0.25 and c["fallback_share"] == 0.0
    assert c["p95_latency_ms"] == pytest.approx(82.0)  # numpy linear: [5, 7, 9, 10, 100] -> 10 + 0.8 * 90
    assert (c["model_version"], t["model_version"]) == ("v1", "v2")
    assert report["samples"]["c"] == {"converted": [1.0, 0.0, 0.0], "watch_minutes": [30.0, 0.0, 0.0],
                                      "rating": [4.0]}


def test_a_wider_window_counts_the_late_watch():
    served, watched, ratings = store()
    c = arm_metrics(served, watched, ratings, window=timedelta(hours=48), as_of=T0 + timedelta(days=4))["arms"]["c"]
    assert c["converted_users"] == 2 and c["mean_rating"] == pytest.approx(2.5)


def test_a_user_is_counted_once_however_many_lists_converted():
    served = [answer(1, T0 + k * H, "c", ["a", "b"]) for k in range(5)]
    watched = [{"user_id": 1, "movie_id": m, "first_ts": T0 + timedelta(minutes=30), "max_minute": 20}
               for m in ("a", "b")]
    outcomes, _ = user_outcomes(served, watched, [], as_of=T0 + timedelta(days=2))
    assert outcomes["c"][0].converted and outcomes["c"][0].watch_minutes == 40.0  # each movie once
    assert arm_metrics(served, watched, [], as_of=T0 + timedelta(days=2))["arms"]["c"]["judged_users"] == 1


def test_with_one_list_per_user_the_rate_is_online_conversion_rate():
    """The same rule as `evaluation online`: on one list per user both rates agree."""
    served, watched, ratings = store()
    one_each = [r for r in served if r["user_id"] in {2, 3, 4, 6} or (r["user_id"] == 1 and r["ts"] > T0)]
    as_of = T0 + timedelta(days=4)
    ours = arm_metrics(one_each, watched, ratings, as_of=as_of)["arms"]
    theirs = online.conversions(one_each, watched, ratings, timedelta(hours=24), as_of)
    converted = sum(a["converted_users"] for a in ours.values())
    judged = sum(a["judged_users"] for a in ours.values())
    assert (converted, judged) == (theirs["converted"], theirs["served"])


def test_arms_named_but_not_served_yet_are_reported_empty():
    report = arm_metrics([], [], [], arms=["c", "t"])
    assert report["arms"]["t"]["users"] == 0 and report["arms"]["t"]["p95_latency_ms"] is None
    with pytest.raises(ValueError, match="window must be positive"):
        arm_metrics([], [], [], window=timedelta(0))


def test_stream_events_fold_into_watched_rows_and_latest_ratings():
    events = [
        {"user_id": 1, "movie_id": "a", "ts": T0 + 2 * H, "minute": 7},
        {"user_id": 1, "movie_id": "a", "ts": T0 + H, "minute": 3},
        {"user_id": 1, "movie_id": "a", "ts": T0 + 3 * H, "rating": 2},
        {"user_id": 1, "movie_id": "a", "ts": T0 + 4 * H, "rating": 5},
    ]
    watched, ratings = activity_from_events(events)
    assert watched == [{"user_id": 1, "movie_id": "a", "first_ts": T0 + H, "max_minute": 7}]
    assert [r["rating"] for r in ratings] == [5]
    with pytest.raises(ValueError, match="a minute or a rating"):
        activity_from_events([{"user_id": 1, "movie_id": "a", "ts": T0}])
