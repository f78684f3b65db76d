"""Offline metrics of a recommender, as pure functions over plain data (no SQL, vectors or clock).

Leave-last-out protocol: each user's last movie (by time, ties by movie id) is held out; the recommender
sees the rest and answers a ranked list. A user with fewer than two distinct movies cannot be scored (no
history is left once the last movie is held out): such users are excluded and counted.

Metrics for a single held-out movie per user (``rank`` is its 1-based position in the list):

* hit rate at k: share of users whose held-out movie is in their top k;
* NDCG at k: mean of 1 / log2(rank + 1) when rank <= k, else 0 (the ideal DCG of one relevant item is 1);
* MRR: mean of 1 / rank over the whole list (0 when absent);
* coverage local: share of the movies known to the store (watched by someone in the held-in part) that
  are recommended to at least one user; coverage global: the same share of the full catalog.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HISTORY_BUCKETS: tuple[int, ...] = (1, 20, 50, 100, 200, 500)
"""Lower bounds of the history-length buckets (held-in distinct movies): 1-19, 20-49, ..., 500+."""


def rank_of(recommended: Sequence[str], target: str) -> int | None:
    """1-based position of ``target`` in ``recommended``, or None when it is absent."""
    for position, movie_id in enumerate(recommended, start=1):
        if movie_id == target:
            return position
    return None


def hit_at_k(recommended: Sequence[str], target: str, k: int) -> float:
    """1.0 when ``target`` is among the first ``k`` recommendations, else 0.0."""
    position = rank_of(recommended[:k], target)
    return 0.0 if position is None else 1.0


def ndcg_at_k(recommended: Sequence[str], target: str, k: int) -> float:
    """NDCG at k with one relevant movie: 1 / log2(rank + 1) within the first k, else 0."""
    position = rank_of(recommended[:k], target)
    return 0.0 if position is None else 1.0 / math.log2(position + 1)


def reciprocal_rank(recommended: Sequence[str], target: str) -> float:
    """1 / rank of ``target`` in the whole list, 0 when absent."""
    position = rank_of(recommended, target)
    return 0.0 if position is None else 1.0 / position


def coverage(recommendations: Iterable[Sequence[str]], universe: Collection[str]) -> float:
    """Share of ``universe`` recommended to at least one user (ids outside the universe are ignored)."""
    if not universe:
        return 0.0
    universe_set = set(universe)
    shown = {m for recommended in recommendations for m in recommended if m in universe_set}
    return len(shown) / len(universe_set)


def history_bucket(length: int, bounds: Sequence[int] = HISTORY_BUCKETS) -> str:
    """The label of the bucket holding a history of ``length`` movies, e.g. ``20-49`` or ``500+``."""
    if length < bounds[0]:
        return f"<{bounds[0]}"
    for low, high in itertools.pairwise(bounds):
        if low <= length < high:
            return f"{low}-{high - 1}"
    return f"{bounds[-1]}+"


@dataclass(frozen=True)
class Interaction:
    """One user-movie event of the held-in or held-out data (a watch or a rating)."""

    user_id: int
    movie_id: str
    ts: Any
    rating: int | None = None


@dataclass(frozen=True)
class Split:
    """A leave-last-out split: the held-in interactions, each scorable user's held-out movie, and the users
    that could not be scored (fewer than two distinct movies)."""

    held_in: list[Interaction]
    held_out: dict[int, str]
    excluded_users: tuple[int, ...]


def _latest_times(rows: Iterable[Interaction]) -> dict[int, dict[str, Any]]:
    """user -> movie -> the time of that user's latest event of the movie."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        movies = latest.setdefault(row.user_id, {})
        if row.movie_id not in movies or row.ts > movies[row.movie_id]:
            movies[row.movie_id] = row.ts
    return latest


def leave_last_out(interactions: Iterable[Interaction], skip_last: int = 0) -> Split:
    """Hold out each user's last distinct movie: the one with the latest time (its latest event), ties
    broken by the larger movie id. Every event of that movie by that user is held out. Users with fewer
    than two distinct movies are excluded (all their events stay held in) and listed.

    ``skip_last`` first drops each user's last ``skip_last`` movies entirely (neither held in nor held
    out): with 1 the target is the second-to-last movie, a validation split for tuning that never sees
    the test target."""
    rows = list(interactions)
    latest = _latest_times(rows)
    held_out: dict[int, str] = {}
    dropped: set[tuple[int, str]] = set()
    excluded: list[int] = []
    for user_id, movies in latest.items():
        ordered = sorted(movies.items(), key=lambda kv: (kv[1], kv[0]))
        if len(ordered) - skip_last < 2:
            excluded.append(user_id)
            continue
        for movie_id, _ in ordered[len(ordered) - skip_last:]:
            dropped.add((user_id, movie_id))
        held_out[user_id] = ordered[len(ordered) - skip_last - 1][0]
    held_in = [row for row in rows if held_out.get(row.user_id) != row.movie_id
               and (row.user_id, row.movie_id) not in dropped]
    return Split(held_in, held_out, tuple(sorted(excluded)))


def _accuracy(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, str],
              users: Iterable[int]) -> dict[str, float]:
    users = list(users)
    n = len(users)
    if n == 0:
        return {"hit_rate_at_20": 0.0, "hit_rate_at_10": 0.0, "ndcg_at_20": 0.0, "mrr": 0.0}
    lists = [(recommendations.get(u, ()), held_out[u]) for u in users]
    return {
        "hit_rate_at_20": sum(hit_at_k(r, t, 20) for r, t in lists) / n,
        "hit_rate_at_10": sum(hit_at_k(r, t, 10) for r, t in lists) / n,
        "ndcg_at_20": sum(ndcg_at_k(r, t, 20) for r, t in lists) / n,
        "mrr": sum(reciprocal_rank(r, t) for r, t in lists) / n,
    }


def summarize(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, str], *,
              store_movies: Collection[str], catalog: Collection[str],
              history_lengths: Mapping[int, int], excluded_users: int = 0) -> dict[str, Any]:
    """Every metric of one recommender over the scorable users (the keys of ``held_out``).

    ``recommendations`` maps user -> ranked list (a missing user counts as an empty list);
    ``store_movies`` is the universe of local coverage, ``catalog`` that of global coverage;
    ``history_lengths`` gives each user's held-in history length for the buckets."""
    users = sorted(held_out)
    report: dict[str, Any] = {"users": len(users), "users_excluded": excluded_users}
    report.update(_accuracy(recommendations, held_out, users))
    shown = [recommendations.get(u, ()) for u in users]
    report["coverage_local"] = coverage(shown, store_movies)
    report["coverage_global"] = coverage(shown, catalog)
    buckets: dict[str, list[int]] = {}
    for u in users:
        buckets.setdefault(history_bucket(history_lengths.get(u, 0)), []).append(u)
    by_length: dict[str, dict[str, Any]] = {}
    for label, members in sorted(buckets.items(), key=lambda kv: min(history_lengths.get(u, 0) for u in kv[1])):
        entry: dict[str, Any] = {"users": len(members)}
        entry.update(_accuracy(recommendations, held_out, members))
        entry["coverage_global"] = coverage((recommendations.get(u, ()) for u in members), catalog)
        by_length[label] = entry
    report["by_history_length"] = by_length
    return report


def popularity_bias(recommendations: Iterable[Sequence[str]], viewers: Mapping[str, int]) -> dict[str, float]:
    """How popular the recommended movies are: mean viewers of a recommended movie, and the share of
    recommendations that fall in the top 1% most watched movies (``viewers`` from the held-in data)."""
    counts = sorted(viewers.values(), reverse=True)
    if not counts:
        return {"mean_viewers": 0.0, "share_top_1pct": 0.0}
    threshold = counts[max(0, math.ceil(len(counts) * 0.01) - 1)]
    shown = [m for recommended in recommendations for m in recommended]
    if not shown:
        return {"mean_viewers": 0.0, "share_top_1pct": 0.0}
    return {
        "mean_viewers": sum(viewers.get(m, 0) for m in shown) / len(shown),
        "share_top_1pct": sum(1 for m in shown if viewers.get(m, 0) >= threshold) / len(shown),
    }


def markdown_table(rows: Mapping[str, Mapping[str, Any]],
                   columns: Sequence[str] = ("users", "hit_rate_at_20", "hit_rate_at_10", "ndcg_at_20", "mrr",
                                             "coverage_local", "coverage_global")) -> str:
    """A Markdown table: one row per recommender, rates as percentages with one decimal."""

    def cell(column: str, value: Any) -> str:
        if isinstance(value, float):
            return f"{100 * value:.1f}%" if "rate" in column or "coverage" in column else f"{value:.3f}"
        return str(value)

    lines = ["| recommender | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(c, row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)



# ------------------------------------------------------------------ uncertainty, paired test, cold start

COLD_USER_BUCKETS: tuple[tuple[int, int], ...] = ((1, 1), (2, 4), (5, 19))
"""Held-in history lengths (inclusive bounds) of the cold-start user buckets."""
COLD_MOVIE_VIEWERS = 5
"""A held-out movie with fewer held-in viewers than this is a cold movie."""


def per_user_values(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, str],
                    users: Sequence[int]) -> dict[str, list[float]]:
    """Each user's hit at 20 and 10, NDCG at 20 and reciprocal rank, in the order of ``users`` (the unit
    of every standard error and paired test is the user)."""
    lists = [(recommendations.get(u, ()), held_out[u]) for u in users]
    return {
        "hit_rate_at_20": [hit_at_k(r, t, 20) for r, t in lists],
        "hit_rate_at_10": [hit_at_k(r, t, 10) for r, t in lists],
        "ndcg_at_20": [ndcg_at_k(r, t, 20) for r, t in lists],
        "mrr": [reciprocal_rank(r, t) for r, t in lists],
    }


def standard_errors(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, str],
                    users: Sequence[int] | None = None) -> dict[str, float]:
    """Standard error of the mean over users of hit rate at 20 and 10, NDCG at 20 and MRR
    (``scipy.stats.sem``, ddof 1); 0.0 with fewer than two users."""
    from scipy import stats

    users = sorted(held_out) if users is None else list(users)
    values = per_user_values(recommendations, held_out, users)
    if len(users) < 2:
        return {name: 0.0 for name in values}
    return {name: float(stats.sem(column)) for name, column in values.items()}


@dataclass(frozen=True)
class PairedTest:
    """Recommender A against B on the same users: hit rates at k, their difference (A - B) with a
    confidence interval over users, the discordant counts and McNemar's exact p-value."""

    users: int
    hit_rate_a: float
    hit_rate_b: float
    difference: float
    ci_low: float
    ci_high: float
    only_a: int
    only_b: int
    p_value: float


def paired_test(recs_a: Mapping[int, Sequence[str]], recs_b: Mapping[int, Sequence[str]],
                held_out: Mapping[int, str], users: Sequence[int] | None = None, k: int = 20,
                confidence: float = 0.95) -> PairedTest:
    """McNemar's exact test of hit at ``k``: under no difference, a user hit by exactly one recommender
    is A's with probability 1/2 (``scipy.stats.binomtest`` on the discordant pairs, two-sided). The
    interval is the paired t interval of the per-user hit differences (``scipy.stats.ttest_rel``)."""
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    users = sorted(held_out) if users is None else list(users)
    if not users:
        raise ValueError("a paired test needs at least one user.")
    a = [hit_at_k(recs_a.get(u, ()), held_out[u], k) for u in users]
    b = [hit_at_k(recs_b.get(u, ()), held_out[u], k) for u in users]
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y > x)
    discordant = only_a + only_b
    p_value = float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    difference = (only_a - only_b) / len(users)
    if discordant and len(users) >= 2:
        interval = stats.ttest_rel(a, b).confidence_interval(confidence)
        low, high = float(interval.low), float(interval.high)
    else:  # every pair agrees (or one user): the sample shows no spread at all
        low = high = difference
    return PairedTest(len(users), sum(a) / len(users), sum(b) / len(users), difference, low, high, only_a,
                      only_b, p_value)


def paired_rates(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Two recommenders' per-user values on the same users (A - B): the mean difference with its paired t
    interval (``scipy.stats.ttest_rel``), the Wilcoxon signed-rank p-value over the users that differ
    (``scipy.stats.wilcoxon``, two-sided) and how many users are better or worse off under A."""
    from scipy import stats

    if len(a) != len(b) or not a:
        raise ValueError("a paired comparison needs the same, non-empty set of users on both sides.")
    diff = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    mean = sum(diff) / len(diff)
    nonzero = [d for d in diff if d != 0]
    if len(diff) >= 2 and len(nonzero):
        interval = stats.ttest_rel(a, b).confidence_interval(confidence)
        low, high = float(interval.low), float(interval.high)
        p_value = float(stats.wilcoxon(nonzero).pvalue)
    else:
        low = high = mean
        p_value = 1.0
    return {"users": len(diff), "mean_a": sum(a) / len(a), "mean_b": sum(b) / len(b), "difference": mean,
            "ci_low": low, "ci_high": high, "wilcoxon_p": p_value, "better": sum(1 for d in diff if d > 0),
            "worse": sum(1 for d in diff if d < 0)}


def cold_start(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, str],
               history_lengths: Mapping[int, int], viewers: Mapping[str, int], k: int = 20,
               users: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """Hit rate at ``k`` in the cold-start buckets: users with 1, 2-4 and 5-19 held-in history movies,
    and users whose held-out movie has fewer than ``COLD_MOVIE_VIEWERS`` held-in viewers (``viewers``
    from the held-in data, absent = 0). An empty bucket has 0 users and hit rate 0.0."""
    users = sorted(held_out) if users is None else list(users)
    members: dict[str, list[int]] = {f"users_{lo}" if lo == hi else f"users_{lo}-{hi}": [] for lo, hi in
                                     COLD_USER_BUCKETS}
    labels = list(members)
    members[f"movies_under_{COLD_MOVIE_VIEWERS}_viewers"] = []
    for u in users:
        length = history_lengths.get(u, 0)
        for label, (lo, hi) in zip(labels, COLD_USER_BUCKETS, strict=True):
            if lo <= length <= hi:
                members[label].append(u)
        if viewers.get(held_out[u], 0) < COLD_MOVIE_VIEWERS:
            members[f"movies_under_{COLD_MOVIE_VIEWERS}_viewers"].append(u)
    out: dict[str, dict[str, float]] = {}
    for label, group in members.items():
        hits = sum(hit_at_k(recommendations.get(u, ()), held_out[u], k) for u in group)
        out[label] = {"users": len(group), f"hit_rate_at_{k}": hits / len(group) if group else 0.0}
    return out


@dataclass(frozen=True)
class FractionSplit:
    """A last-fraction-out split: the held-in interactions, each scorable user's held-out movies (most
    recent last) and the users that could not be scored (fewer than two distinct movies)."""

    held_in: list[Interaction]
    held_out: dict[int, tuple[str, ...]]
    excluded_users: tuple[int, ...]


def last_fraction_out(interactions: Iterable[Interaction], fraction: float = 0.2) -> FractionSplit:
    """Hold out each user's last ``fraction`` of distinct movies by time (a movie's time is its latest
    event; ties by movie id), ``floor(fraction * n)`` but at least one, and every event of those movies
    by that user. Users with fewer than two distinct movies are excluded (all their events stay held
    in); at least one movie always stays held in."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}.")
    rows = list(interactions)
    latest = _latest_times(rows)
    held_out: dict[int, tuple[str, ...]] = {}
    excluded: list[int] = []
    for user_id, movies in latest.items():
        if len(movies) < 2:
            excluded.append(user_id)
            continue
        ordered = [m for m, _ in sorted(movies.items(), key=lambda kv: (kv[1], kv[0]))]
        count = min(max(1, math.floor(fraction * len(ordered))), len(ordered) - 1)
        held_out[user_id] = tuple(ordered[-count:])
    out = {(u, m) for u, ms in held_out.items() for m in ms}
    held_in = [row for row in rows if (row.user_id, row.movie_id) not in out]
    return FractionSplit(held_in, held_out, tuple(sorted(excluded)))


def recall_at_k(recommended: Sequence[str], targets: Collection[str], k: int) -> float:
    """Share of the held-out movies found in the first ``k``, out of min(k, number held out), so a
    perfect list scores 1 however many movies were held out (0.0 for no targets)."""
    if not targets:
        return 0.0
    found = len(set(recommended[:k]) & set(targets))
    return found / min(k, len(targets))


def summarize_fraction(recommendations: Mapping[int, Sequence[str]], held_out: Mapping[int, Collection[str]],
                       *, catalog: Collection[str], users: Sequence[int] | None = None) -> dict[str, Any]:
    """Metrics of a last-fraction-out split: users with at least one held-out movie in the top 20 and 10
    (hit rate), recall at 20 (``recall_at_k``), with standard errors, and global coverage."""
    from scipy import stats

    users = sorted(held_out) if users is None else list(users)
    columns: dict[str, list[float]] = {"hit_rate_at_20": [], "hit_rate_at_10": [], "recall_at_20": []}
    for u in users:
        recs, targets = recommendations.get(u, ()), set(held_out[u])
        columns["hit_rate_at_20"].append(1.0 if targets & set(recs[:20]) else 0.0)
        columns["hit_rate_at_10"].append(1.0 if targets & set(recs[:10]) else 0.0)
        columns["recall_at_20"].append(recall_at_k(recs, targets, 20))
    report: dict[str, Any] = {"users": len(users)}
    for name, column in columns.items():
        report[name] = sum(column) / len(column) if column else 0.0
        report[f"{name}_se"] = float(stats.sem(column)) if len(column) >= 2 else 0.0
    report["coverage_global"] = coverage((recommendations.get(u, ()) for u in users), catalog)
    return report
