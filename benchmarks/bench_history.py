"""The cost of excluding a user's whole history: the service's one history round trip by history length.

The service reads each user's history once per request. Before the exclusion change it read the 50 most
recent movies (ranked, and the only ones excluded); now it reads the whole history in the same statement
(`RECOMMEND_EXCLUDE_LIMIT`, 30,000), ranks the 50 most recent and excludes all. This prints, on one store,
for users of each history length:

  recent   `user_history_dbapi(..., limit=50)`: the old request's read                   -> ms per call
  whole    `user_history_dbapi(..., limit=30000)` plus the exclusion set (the new read)  -> ms per call
  rank     `rank` of the 50 most recent with 40 neighbours each, excluding the whole history
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
from inference.cache import NeighbourList
from inference.config import RankConfig
from inference.ranking import normalize_popularity, rank


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
    neighbours = {m: NeighbourList((n, rng.random()) for n in rng.sample(movies, 40)) for m in movies}
    popular = normalize_popularity([(m, 1000 - i) for i, m in enumerate(movies[:200])])

    def read(user: int, limit: int) -> list:
        rows = queries.user_history_dbapi(cursor, dialect, user, limit)
        if server:
            raw.rollback()
        return rows

    print(f"{dialect.name}: best of {args.rounds} rounds of {args.calls} calls, ms per call")
    print(f"{'movies':>7} {'recent (old)':>13} {'whole (new)':>12} {'new/old':>8} {'rank':>7}")
    worst = 1.0
    for length in args.lengths:
        old = best_ms(lambda length=length: read(length, 50), args.calls, args.rounds)

        def whole(length: int = length) -> tuple[list, set]:
            rows = read(length, 30_000)
            return rows[:50], {m for m, _ in rows}

        new = best_ms(whole, args.calls, args.rounds)
        history, seen = whole()
        ranked = best_ms(lambda h=history, s=seen: rank(h, neighbours, popular, config, exclude=s),
                         max(50, args.calls // 3), args.rounds)
        worst = max(worst, new / old)
        print(f"{length:>7} {old:>13.3f} {new:>12.3f} {new / old:>7.2f}x {ranked:>7.3f}")
    raw.close()
    engine.dispose()
    print(f"summary: one round trip per request; reading the whole history costs at most {worst:.2f}x the "
          f"50-movie read at {max(args.lengths)} movies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
