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

from core.assignment import assign

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
    versions = versions or {a: a for a, _ in arms}
    served: list[dict[str, Any]] = []
    watched: list[dict[str, Any]] = []
    ratings: list[dict[str, Any]] = []
    for user in range(1, users + 1):
        arm = assign(experiment, user, arms)
        lists = [[f"{arm}-{user}-{day}-{k}" for k in range(3)] for day in range(days)]
        for day, ids in enumerate(lists):
            served.append({
                "user_id": user, "ts": start + timedelta(days=day, minutes=int(rng.integers(0, 600))),
                "arm": arm, "model_version": versions[arm], "movie_ids": ids,
                "latency_ms": float(rng.gamma(4.0, (latency_ms or {}).get(arm, 10.0) / 4.0)),
                "fallback": bool(rng.random() < (fallback or {}).get(arm, 0.0)), "status": 200,
            })
        if rng.random() < conversion[arm]:
            row = served[-1 - int(rng.integers(0, days))]
            movie = row["movie_ids"][int(rng.integers(0, len(row["movie_ids"])))]
            ts = row["ts"] + timedelta(minutes=int(rng.integers(1, 600)))
            watched.append({"user_id": user, "movie_id": movie, "first_ts": ts,
                            "max_minute": int(rng.integers(1, 120))})
            ratings.append({"user_id": user, "movie_id": movie, "rating": int(rng.integers(1, 6)), "ts": ts})
    return SyntheticData(served, watched, ratings, as_of=start + timedelta(days=days + 1))
