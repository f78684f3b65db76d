"""Synthetic experiments on plain data: users assigned by `core.assignment`, served lists by their arm's
version, and watches drawn with a known conversion probability per arm.

For the statistics' own checks (A/A: equal probabilities, "significant" about alpha of the time; A/B: a
real difference is found) and for the notebook's curves, without a store or a service. Each user gets
one list a day for ``days`` days; a user of an arm with probability p converts with probability p (the
user is the unit), watching one of the listed movies some minutes after one of their lists, for a number
of minutes, and rating it 1..5. Seeded: the same arguments give the same data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from core.assignment import assigner

START = datetime(2026, 3, 1)


@dataclass(frozen=True)
class SyntheticData:
    """Served answers, watched rows and ratings in the shapes `evaluation.experiments.arms` reads."""

    served: list[dict[str, Any]]
    watched: list[dict[str, Any]]
    ratings: list[dict[str, Any]]
    as_of: datetime


def simulate(experiment: str, arms: Sequence[tuple[str, float]], conversion: Mapping[str, float], users: int,
             seed: int, versions: Mapping[str, str] | None = None, days: int = 2,
             latency_ms: Mapping[str, float] | None = None, fallback: Mapping[str, float] | None = None,
             start: datetime = START) -> SyntheticData:
    """Users 1..``users`` assigned to ``arms`` in ``experiment``; each arm's users convert with the
    probability ``conversion[arm]``."""
    rng = np.random.default_rng(seed)
    arm_of = assigner(experiment, arms)
    versions = versions or {a: a for a, _ in arms}
    served: list[dict[str, Any]] = []
    watched: list[dict[str, Any]] = []
    ratings: list[dict[str, Any]] = []
    offsets = rng.integers(0, 600, size=(users, days)).tolist()  # minutes after midnight of each day's list
    latency = rng.gamma(4.0, 0.25, size=(users, days)).tolist()  # mean 1, scaled by the arm's mean
    coins = rng.random(size=(users, days)).tolist()
    draws = rng.random(users).tolist()
    which = rng.integers(0, days, size=users).tolist()
    movie = rng.integers(0, 3, size=users).tolist()
    after = rng.integers(1, 600, size=users).tolist()
    minutes = rng.integers(1, 120, size=users).tolist()
    stars = rng.integers(1, 6, size=users).tolist()
    for i in range(users):
        user = i + 1
        arm = arm_of(user)
        mean_latency = (latency_ms or {}).get(arm, 10.0)
        fallback_share = (fallback or {}).get(arm, 0.0)
        rows = [{"user_id": user, "ts": start + timedelta(days=day, minutes=offsets[i][day]), "arm": arm,
                 "model_version": versions[arm], "movie_ids": [f"{arm}-{user}-{day}-{k}" for k in range(3)],
                 "latency_ms": latency[i][day] * mean_latency, "fallback": coins[i][day] < fallback_share,
                 "status": 200} for day in range(days)]
        served.extend(rows)
        if draws[i] < conversion[arm]:
            row = rows[which[i]]
            ts = row["ts"] + timedelta(minutes=after[i])
            watched.append({"user_id": user, "movie_id": row["movie_ids"][movie[i]], "first_ts": ts,
                            "max_minute": minutes[i]})
            ratings.append({"user_id": user, "movie_id": row["movie_ids"][movie[i]], "rating": stars[i], "ts": ts})
    return SyntheticData(served, watched, ratings, as_of=start + timedelta(days=days + 1))
