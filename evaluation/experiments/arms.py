"""Per-arm metrics of an experiment from plain data: what the users of each arm did with their lists.

Inputs (plain dicts, the shapes the store and the provenance log give):

- served answers: ``user_id``, ``ts`` (datetime), ``arm``, ``model_version``, ``movie_ids`` (list),
  ``latency_ms``, ``fallback`` (bool), optionally ``status`` (default 200);
- watched rows: ``user_id``, ``movie_id``, ``first_ts`` and optionally ``max_minute`` (the furthest minute
  reached, read as the minutes watched), as the ``watched`` table holds them; raw stream events collapse
  into these rows with `activity_from_events`;
- ratings: ``user_id``, ``movie_id``, ``rating``.

Conversion is `evaluation.online`'s: a served list (status 200, at least one id) converts when its user
first starts watching one of its movies in [served ts, served ts + window] (default 24 h); a movie started
before the list was served does not count; lists whose window has not ended by ``as_of`` are pending and
not judged. The unit is the user, not the answer (a user's answers are not independent):

- a user is *converted* when any of their judged lists converted;
- their *watch minutes* are the minutes watched of the movies that converted one of their lists (each
  movie once);
- their *mean rating* is the mean of their ratings of those movies (None when they rated none).

Per arm: ``users`` (distinct users served any answer: the count the sample-ratio check uses),
``judged_users`` (users with at least one judged list: the denominator of the conversion rate),
``converted_users``, ``conversion_rate``, ``mean_watch_minutes`` (over judged users),
``mean_rating`` (over users with a rated conversion), ``answers`` (every answer served, failed ones too),
``fallback_share`` (fallback answers / answers), ``p95_latency_ms`` (numpy's linear percentile over the
answers) and ``model_version`` (the version that served most of the arm's answers). A user served by more
than one arm (shares changed mid-experiment, or a bug) would contaminate both: such users are left out of
every arm's user figures and counted in ``users_in_several_arms``; the answer figures (answers, fallback
share, latency, version) count every answer an arm served, theirs too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from evaluation.online import _index_ratings, _index_watches

DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class UserOutcome:
    """What one user of an arm did with the lists the arm served them."""

    user_id: int
    judged: bool
    converted: bool
    watch_minutes: float
    mean_rating: float | None


def activity_from_events(events: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Watched rows and ratings from raw stream events (``user_id``, ``movie_id``, ``ts`` and either
    ``minute`` for a watch or ``rating``), as the parser folds them into the store: per (user, movie) the
    first watch time and the furthest minute; the latest rating wins (ties: the higher rating)."""
    watched: dict[tuple[int, str], dict[str, Any]] = {}
    rated: dict[tuple[int, str], tuple[datetime, int]] = {}
    for e in events:
        key = (int(e["user_id"]), str(e["movie_id"]))
        if e.get("rating") is not None:
            value = (e["ts"], int(e["rating"]))
            if key not in rated or value > rated[key]:
                rated[key] = value
        elif e.get("minute") is not None:
            row = watched.setdefault(key, {"user_id": key[0], "movie_id": key[1], "first_ts": e["ts"],
                                           "max_minute": int(e["minute"])})
            row["first_ts"] = min(row["first_ts"], e["ts"])
            row["max_minute"] = max(row["max_minute"], int(e["minute"]))
        else:
            raise ValueError(f"a stream event needs a minute or a rating, got {dict(e)!r}")
    ratings = [{"user_id": u, "movie_id": m, "rating": r, "ts": ts} for (u, m), (ts, r) in rated.items()]
    return list(watched.values()), ratings


def _is_list(row: Mapping[str, Any]) -> bool:
    return int(row.get("status", 200)) == 200 and bool(row["movie_ids"])


def user_outcomes(served: Sequence[Mapping[str, Any]], watched: Iterable[Mapping[str, Any]],
                  ratings: Iterable[Mapping[str, Any]], window: timedelta = DEFAULT_WINDOW,
                  as_of: datetime | None = None) -> tuple[dict[str, list[UserOutcome]], int]:
    """Per arm, one outcome per user (sorted by user id); and the number of users left out for being served
    by several arms."""
    watched = list(watched)
    first_watch = _index_watches(watched)
    minutes = {(int(w["user_id"]), str(w["movie_id"])): float(w.get("max_minute") or 0) for w in watched}
    rating_of = _index_ratings(ratings)
    arms_of: dict[int, set[str]] = defaultdict(set)
    judged: set[int] = set()
    hits: dict[int, set[str]] = defaultdict(set)
    for row in served:
        user = int(row["user_id"])
        arms_of[user].add(str(row["arm"]))
        if not _is_list(row):
            continue
        ts: datetime = row["ts"]
        if as_of is not None and ts + window > as_of:
            continue  # pending: its window is still open
        judged.add(user)
        hits[user].update(m for m in map(str, row["movie_ids"])
                          if (user, m) in first_watch and ts <= first_watch[(user, m)] <= ts + window)
    by_arm: dict[str, list[UserOutcome]] = defaultdict(list)
    several = 0
    for user in sorted(arms_of):
        if len(arms_of[user]) > 1:
            several += 1
            continue
        movies = hits[user]
        rated = [rating_of[(user, m)] for m in movies if (user, m) in rating_of]
        by_arm[next(iter(arms_of[user]))].append(UserOutcome(
            user_id=user, judged=user in judged, converted=bool(movies),
            watch_minutes=sum(minutes[(user, m)] for m in movies),
            mean_rating=sum(rated) / len(rated) if rated else None))
    return dict(by_arm), several


def _answer_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    latencies = [float(r["latency_ms"]) for r in rows if r.get("latency_ms") is not None]
    versions = Counter(str(r["model_version"]) for r in rows if r.get("model_version") is not None)
    return {
        "answers": len(rows),
        "fallback_share": sum(1 for r in rows if r.get("fallback")) / len(rows) if rows else 0.0,
        "p95_latency_ms": float(np.percentile(latencies, 95)) if latencies else None,
        "model_version": versions.most_common(1)[0][0] if versions else None,
    }


def _outcome_metrics(outcomes: Sequence[UserOutcome]) -> dict[str, Any]:
    judged = [o for o in outcomes if o.judged]
    rated = [o.mean_rating for o in judged if o.mean_rating is not None]
    converted = sum(1 for o in judged if o.converted)
    return {
        "users": len(outcomes),
        "judged_users": len(judged),
        "converted_users": converted,
        "conversion_rate": converted / len(judged) if judged else 0.0,
        "mean_watch_minutes": sum(o.watch_minutes for o in judged) / len(judged) if judged else 0.0,
        "mean_rating": sum(rated) / len(rated) if rated else None,
        "rated_users": len(rated),
    }


def per_user_samples(outcomes: Sequence[UserOutcome]) -> dict[str, list[float]]:
    """The per-user values the statistics compare: converted (0/1) and watch minutes of judged users, and
    the mean rating of users with a rated conversion."""
    judged = [o for o in outcomes if o.judged]
    return {"converted": [float(o.converted) for o in judged],
            "watch_minutes": [o.watch_minutes for o in judged],
            "rating": [o.mean_rating for o in judged if o.mean_rating is not None]}


def arm_metrics(served: Sequence[Mapping[str, Any]], watched: Iterable[Mapping[str, Any]],
                ratings: Iterable[Mapping[str, Any]], window: timedelta = DEFAULT_WINDOW,
                as_of: datetime | None = None, arms: Sequence[str] = ()) -> dict[str, Any]:
    """The metrics of every arm (those named in ``arms`` first, even when they served nobody yet), with the
    per-user samples the statistics need under ``samples``."""
    if window <= timedelta(0):
        raise ValueError("the conversion window must be positive")
    outcomes, several = user_outcomes(served, watched, ratings, window, as_of)
    rows_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in served:
        rows_of[str(row["arm"])].append(row)
    names = list(dict.fromkeys([*arms, *sorted(rows_of)]))
    return {
        "window_hours": window.total_seconds() / 3600,
        "as_of": as_of,
        "users_in_several_arms": several,
        "arms": {a: {**_outcome_metrics(outcomes.get(a, [])), **_answer_metrics(rows_of.get(a, []))}
                 for a in names},
        "samples": {a: per_user_samples(outcomes.get(a, [])) for a in names},
    }
