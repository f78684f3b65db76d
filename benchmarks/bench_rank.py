"""`inference.ranking.rank` by history length, beside a bare pass over the same pairs, in the same run.

The service ranks each user's most recent N watched movies (default 50) with K neighbours each (the blended
content + collaborative lists hold up to 2K = 40). The synthetic benchmark users average 1.9 movies; real
users (the MovieLens demo averages 149 ratings) hit the cap, so this prints what a long history costs:

  rank   rank(history, neighbours, popular list, RankConfig()) on one core        -> ms per call
  arrays rank_arrays over the same lists (int32 indices into one id table, float32 similarities): what
         the service serves; it returns the same list as rank                       -> ms per call
  bare   one Python pass over the same (history movie, neighbour) pairs that only sums each
         candidate's similarity into a dict: the floor any per-pair loop pays       -> ms per call
Each figure is the best of `--rounds` rounds of `--calls` calls (load elsewhere only slows a round).

    python benchmarks/bench_rank.py
    python benchmarks/bench_rank.py --lengths 1 2 5 10 20 50 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from inference.cache import IdTable, NeighbourList
from inference.config import RankConfig
from inference.ranking import normalize_popularity, rank, rank_arrays


def bare_pass(history: list[tuple[str, float | None]], neighbours: dict[str, NeighbourList]) -> dict[str, float]:
    """Touch every pair once: the per-pair floor of a Python loop over the same data."""
    total: dict[str, float] = {}
    get = total.get
    for movie_id, _ in history:
        for candidate, similarity in neighbours.get(movie_id, ()):
            total[candidate] = get(candidate, 0.0) + similarity
    return total


def best_ms(call: Callable[[], object], calls: int, rounds: int) -> float:
    """Best round's mean milliseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls * 1e3)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50])
    parser.add_argument("--movies", type=int, default=27000, help="catalog size (default: %(default)s)")
    parser.add_argument("--neighbours", type=int, default=40, help="neighbours per movie (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    catalog = [f"movie+{i}+{1950 + i % 70}" for i in range(args.movies)]
    watched = catalog[: max(args.lengths) * 40]
    # Neighbour lists as the service's cache holds them (NeighbourList: interned ids, float32 similarities).
    table = IdTable()
    neighbours = {m: NeighbourList(sorted(((rng.choice(catalog), rng.random()) for _ in range(args.neighbours)),
                                          key=lambda p: -p[1]), table)
                  for m in watched}
    table.indices_of(catalog)  # the id table of a warmed cache holds the whole catalog
    popular = normalize_popularity([(m, 10000 - i) for i, m in enumerate(catalog[:200])])
    config = RankConfig()
    user = [(m, rng.choice([None, 1, 2, 3, 4, 5])) for m in rng.sample(watched, max(args.lengths))]

    print(f"rank over {args.neighbours} neighbours per history movie, {args.movies:,}-movie catalog, "
          f"best of {args.rounds} rounds x {args.calls} calls, one core")
    for length in args.lengths:
        history = user[:length]
        ranked = best_ms(lambda h=history: rank(h, neighbours, popular, config), args.calls, args.rounds)
        fast = best_ms(lambda h=history: rank_arrays(h, neighbours, popular, config), args.calls, args.rounds)
        bare = best_ms(lambda h=history: bare_pass(h, neighbours), args.calls, args.rounds)
        pairs = sum(len(neighbours[m]) for m, _ in history)
        assert rank_arrays(history, neighbours, popular, config) == rank(history, neighbours, popular, config)
        print(f"history {length:3d} ({pairs:5,} pairs): rank {ranked:6.3f} ms | rank_arrays {fast:6.3f} ms "
              f"| bare pass {bare:6.3f} ms | rank = {ranked / bare:4.1f}x, rank_arrays = {fast / bare:4.2f}x "
              "the bare pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
