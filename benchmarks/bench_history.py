"""The cost of excluding a user's whole history: the service's one history round trip by history length.

The service reads each user's history once per request: the 50 most recent movies (ranked) and every
movie of the history (excluded). This prints, on one store, for users of each history length:

  whole     `user_history_dbapi(..., limit=30000)` and a set of its ids: every row with its timestamp
            and rating, the read before issue #17                                          -> ms per call
  new       `recent_and_seen_dbapi`: the 50 newest rows plus one aggregated string of all ids, split
            into a frozenset (what `SqlHistorySource.recent_and_seen` serves)              -> ms per call
  rank      `rank_arrays` of the 50 newest with 40 neighbours each, excluding the whole history
Each figure is the best of `--rounds` rounds of `--calls` calls, on one held DBAPI connection as in the
service. SQLite by default; `--database-url postgresql+psycopg://...` measures a PostgreSQL server.

    python benchmarks/bench_history.py
    python benchmarks/bench_history.py --lengths 1 50 500 2000 --database-url postgresql+psycopg://u:p@h/db
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from datetime import datetime, timedelta

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from benchmarks.bench_rank import best_ms
from db_utils import migrate, queries
from db_utils.engine import create
from db_utils.queries import SEEN_SEPARATOR
from inference.cache import IdTable, NeighbourList
from inference.config import RankConfig
from inference.ranking import normalize_popularity, rank_arrays


def build(url: str, lengths: list[int], catalog: int) -> None:
    """One user per length (user id = length) with that many watched movies, a third of them rated."""
    engine = create(url)
    start = datetime(2024, 1, 1)
    movies = [f"movie+{i}+2000" for i in range(catalog)]
    with engine.begin() as conn:
        for length in lengths:
            chosen = random.Random(length).sample(movies, length)
            queries.upsert_watches(conn, [{"user_id": length, "movie_id": m, "minute": 5,
                                           "ts": start + timedelta(minutes=i)} for i, m in enumerate(chosen)])
            queries.upsert_ratings(conn, [{"user_id": length, "movie_id": m, "rating": 1 + i % 5,
                                           "ts": start + timedelta(minutes=i, seconds=30)}
                                          for i, m in enumerate(chosen) if i % 3 == 0])
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 10, 50, 200, 500, 2000])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite store")
    parser.add_argument("--catalog", type=int, default=27_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-history-")
    url = args.database_url or f"sqlite:///{tmp}/recsys.db"
    migrate.upgrade(url)
    build(url, args.lengths, args.catalog)
    engine = create(url)
    raw = engine.raw_connection()
    cursor, dialect = raw.cursor(), engine.dialect
    server = dialect.name != "sqlite"
    config = RankConfig()
    rng = random.Random(0)
    movies = [f"movie+{i}+2000" for i in range(args.catalog)]
    table = IdTable()
    neighbours = {m: NeighbourList(((n, rng.random()) for n in rng.sample(movies, 40)), table) for m in movies}
    popular = normalize_popularity([(m, 1000 - i) for i, m in enumerate(movies[:200])])

    def finish(out: object) -> object:
        if server:
            raw.rollback()
        return out

    def whole(user: int) -> tuple[list, set]:
        rows = finish(queries.user_history_dbapi(cursor, dialect, user, 30_000))
        return rows[:50], {m for m, _ in rows}

    def new(user: int) -> tuple[list, frozenset]:
        rows, seen = finish(queries.recent_and_seen_dbapi(cursor, dialect, user, 50, 30_000))
        return rows, frozenset(seen.split(SEEN_SEPARATOR)) if seen else frozenset()

    print(f"{dialect.name}: best of {args.rounds} rounds of {args.calls} calls, ms per call")
    print(f"{'movies':>7} {'whole (before)':>15} {'new':>8} {'new/before':>11} {'rank_arrays':>12}")
    for length in args.lengths:
        before = best_ms(lambda length=length: whole(length), args.calls, args.rounds)
        after = best_ms(lambda length=length: new(length), args.calls, args.rounds)
        history, seen = new(length)
        assert (history, seen) == (whole(length)[0], whole(length)[1]), "the two reads disagree"
        ranked = best_ms(lambda h=history, s=seen: rank_arrays(h, neighbours, popular, config, exclude=s),
                         max(50, args.calls // 3), args.rounds)
        print(f"{length:>7} {before:>15.3f} {after:>8.3f} {after / before:>10.2f}x {ranked:>12.3f}")
        last = (length, before, after)
    raw.close()
    engine.dispose()
    print(f"summary: one round trip per request either way; at {last[0]} movies the new read costs "
          f"{last[2]:.3f} ms against {last[1]:.3f} ms ({last[2] / last[1]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
