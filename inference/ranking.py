"""The ranking: a pure function over plain data (no SQL, ChromaDB, Flask or clock in here).

Semantics of `rank(history, neighbours, popularity, config)`:

* history: the user's most recent watched or rated movies, most recent first, as (movie_id, rating|None).
  A movie listed twice counts once, at its most recent position. An unrated watch counts as
  `config.unrated_rating` (3).
* affinity(c) = sum over history movies h that list c among their neighbours of
  weight(rating(h)) * recency_decay**position(h) * similarity(h, c)**e, where x**e is
  sign(x) * |x| ** `config.similarity_exponent` (1: the similarity itself). Ratings of 4-5 raise, 3 is mild,
  2 or less gives a negative weight: a candidate whose affinity is negative is pushed away and never
  recommended, not even from the popular list, so a poorly rated movie's neighbours are not
  recommended because of it.
* score(c) = affinity(c) / (viewers(c) + 1) ** damping + popularity_weight * popularity_norm(c),
  popularity_norm in [0, 1] (log-scaled viewer counts divided by the largest, or 1 - rank/len for a bare
  ordered list); viewers(c) is the count `popularity` gives (0 when it gives none, or only an order). The
  damping divides away part of the blockbusters' head start, so the list reaches into the catalog's tail.
  damping = `user_damping`: popularity_damping + damping_slope * (damping_center - m), m the mean
  popularity_norm of the (deduplicated) history movies: per user, from how mainstream the history is.
* neighbours may blend several vector collections (MiniLM content vectors and collaborative item
  vectors): `blend_neighbours` sums each source's similarities with its weight
  (`config.content_weight`, `config.collab_weight`) before `rank` sees them.
* Candidates are the neighbours with positive affinity plus the popular movies (affinity 0), so the
  list is filled to `n_results` from the popular ones; a user with no history gets the popular list.
* Seen movies are excluded: the history's and every id in `exclude` (the user's whole history, of
  which `history` is only the most recent part). Ties break by popularity, then by movie id, so the answer is
  deterministic (and the popular order survives a popularity_weight of 0).
* Tail slots (`config.tail_slots` > 0): the first n_results - tail_slots movies are the list above; the
  rest are the best movies not yet listed by the same ranking with `config.tail_config()` (its own
  damping, damping slope and recency decay; their `score` is that tail score). `with_tail` does this for
  both functions.
* Each scored movie names the history movie that contributed most to it ("because you watched X"),
  or None when it comes from popularity alone.

`rank` is the readable reference. `rank_arrays` returns the same list (same ids, order and `because`;
scores equal up to the last bits of the damping's power) from neighbour lists held as int32 indices into
one id table plus float32 similarities (`inference.cache.NeighbourList`): the per-pair work (weights,
exclusion, affinity sums) is NumPy over the concatenated lists, and only the handful of movies that can
make the list go through Python. The service serves `rank_arrays`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from inference.config import RankConfig

History = Sequence[tuple[str, float | None]]
Neighbours = Mapping[str, Sequence[tuple[str, float]]]
Popularity = Mapping[str, float] | Sequence[str] | Sequence[tuple[str, float]]


class Scored(NamedTuple):
    """One recommended movie: its id, its score and the history movie it is mostly due to (immutable; a
    NamedTuple because `rank` makes twenty a request and a frozen dataclass costs several times more)."""

    movie_id: str
    score: float
    because: str | None = None


class NormalizedPopularity(dict[str, float]):
    """Movie id -> popularity in [0, 1], ordered most popular first (ties by id). `rank` uses it as it
    is, so a caller may normalize a popular list once and rank many users against it. `counts` keeps
    the raw viewer counts it was made from (empty for a bare ordered list), so the popularity damping
    sees viewers, not normalized values, whoever normalized first."""

    counts: dict[str, float]

    def __init__(self, values: Iterable[tuple[str, float]] | Mapping[str, float] = (),
                 counts: Mapping[str, float] | None = None):
        super().__init__(values)
        self.counts = dict(counts or {})


def normalize_popularity(popularity: Popularity) -> NormalizedPopularity:
    """Map movie id -> popularity in [0, 1], most popular first.

    Counts (a mapping or (id, count) pairs) are log-scaled: log1p(count) / log1p(max count), so a
    blockbuster does not drown the similarity scores. A bare ordered list of ids (most popular first)
    gets 1 - rank/len. An already normalized mapping is returned unchanged.
    """
    if isinstance(popularity, NormalizedPopularity):
        return popularity
    if isinstance(popularity, Mapping):
        pairs = [(str(k), float(v)) for k, v in popularity.items()]
    else:
        items = list(popularity)
        if items and isinstance(items[0], str):
            n = len(items)
            ordered: dict[str, float] = {}
            for i, movie_id in enumerate(items):
                ordered.setdefault(movie_id, 1.0 - i / n)  # type: ignore[arg-type]
            return NormalizedPopularity(ordered)
        pairs = [(str(k), float(v)) for k, v in items]
    top = max((v for _, v in pairs), default=0.0)
    scale = math.log1p(top) if top > 0 else 0.0
    values: dict[str, float] = {}
    for k, v in pairs:
        values.setdefault(k, math.log1p(max(v, 0.0)) / scale if scale else 0.0)
    counts: dict[str, float] = {}
    for k, v in pairs:
        counts.setdefault(k, v)
    return NormalizedPopularity(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])), counts)


def viewer_counts(popularity: Popularity) -> dict[str, float]:
    """Raw viewer counts from a popularity mapping or (id, count) pairs; empty for a bare list of ids."""
    if isinstance(popularity, NormalizedPopularity):
        return popularity.counts
    if isinstance(popularity, Mapping):
        return {str(k): float(v) for k, v in popularity.items()}
    items = list(popularity)
    if not items or isinstance(items[0], str):
        return {}
    return {str(k): float(v) for k, v in items}


def blend_neighbours(sources: Sequence[tuple[float, Neighbours]]) -> dict[str, list[tuple[str, float]]]:
    """One neighbour list per movie from several weighted sources: similarity(h, c) = sum over sources of
    weight * similarity in that source (absent = 0). Sources of weight 0 are skipped. Each list is sorted
    by blended similarity, most similar first, ties by id, so the result is deterministic."""
    blended: dict[str, dict[str, float]] = {}
    for weight, neighbours in sources:
        if weight == 0:
            continue
        for movie_id, pairs in neighbours.items():
            row = blended.setdefault(movie_id, {})
            for candidate, similarity in pairs:
                row[candidate] = row.get(candidate, 0.0) + weight * float(similarity)
    return {m: sorted(row.items(), key=lambda kv: (-kv[1], kv[0])) for m, row in blended.items()}


def user_damping(history: Iterable[str], pop: Mapping[str, float], config: RankConfig) -> float:
    """The user's damping exponent: `config.popularity_damping` moved by `config.damping_slope` times how
    far the history's mean popularity_norm (0 outside `pop`) lies below `config.damping_center`, so a
    long-tail history gets the tail and a mainstream one the popular end."""
    if not config.damping_slope:
        return config.popularity_damping
    values = [pop.get(m, 0.0) for m in history]
    mean = sum(values) / len(values) if values else config.damping_center
    return config.popularity_damping + config.damping_slope * (config.damping_center - mean)


def with_tail(ranker: Any, history: History, neighbours: Any, popularity: Popularity, config: RankConfig,
              exclude: Collection[str] = ()) -> list[Scored]:
    """`ranker`'s list with its last `config.tail_slots` places taken from the tail ranking (see the module
    docstring): two calls of `ranker` with `tail_slots` = 0, the head's order kept, duplicates skipped."""
    head_config = replace(config, tail_slots=0)
    keep = max(config.n_results - config.tail_slots, 0)
    head = ranker(history, neighbours, popularity, head_config, exclude)[:keep]
    listed = {s.movie_id for s in head}
    tail = [s for s in ranker(history, neighbours, popularity, config.tail_config(), exclude)
            if s.movie_id not in listed]
    return head + tail[: config.n_results - len(head)]


def rank(
    history: History, neighbours: Neighbours, popularity: Popularity, config: RankConfig,
    exclude: Collection[str] = (),
) -> list[Scored]:
    """Up to `config.n_results` unseen movies, best first (see the module docstring for the formula).

    `history` is what the ranking reads (the most recent N movies); `exclude` is every movie the user has
    watched or rated, however long ago: none of them is ever returned."""
    if config.tail_slots:
        return with_tail(rank, history, neighbours, popularity, config, exclude)
    history_seen: dict[str, float | None] = {}
    for movie_id, rating in history:
        history_seen.setdefault(movie_id, rating)
    seen: Collection[str] = history_seen.keys() | exclude if exclude else history_seen

    affinity: dict[str, float] = {}
    reason: dict[str, tuple[float, str]] = {}
    min_similarity = config.min_similarity
    exponent = config.similarity_exponent
    get_affinity, get_reason = affinity.get, reason.get  # the inner loop runs ~1,000 times a request
    for position, (source, rating) in enumerate(history_seen.items()):
        weight = config.weight_of(rating) * config.recency_decay**position
        if weight == 0:
            continue
        for candidate, similarity in neighbours.get(source, ()):
            if similarity < min_similarity or candidate in seen:
                continue
            if exponent != 1.0:
                similarity = math.copysign(abs(similarity) ** exponent, similarity)
            contribution = weight * similarity
            affinity[candidate] = get_affinity(candidate, 0.0) + contribution
            if contribution > 0:
                best = get_reason(candidate)
                if best is None or contribution > best[0] or (contribution == best[0] and source < best[1]):
                    reason[candidate] = (contribution, source)

    pop = normalize_popularity(popularity)
    damping = user_damping(history_seen, pop, config)
    counts = viewer_counts(popularity) if damping else {}
    scores: dict[str, float] = {}
    for candidate, value in affinity.items():
        if value > 0:
            if counts:
                value /= (counts.get(candidate, 0.0) + 1.0) ** damping
            scores[candidate] = value + config.popularity_weight * pop.get(candidate, 0.0)
    # Popular movies in order: only the first n_results eligible ones can make the list (a later one
    # has no higher score), so the scan stops there.
    taken = 0
    for candidate, value in pop.items():
        if candidate in seen or affinity.get(candidate, 0.0) < 0:
            continue
        if candidate not in scores:
            scores[candidate] = config.popularity_weight * value
        taken += 1
        if taken >= config.n_results and config.popularity_weight >= 0:
            break

    pop_get = pop.get
    order = [(-value, -pop_get(candidate, 0.0), candidate) for candidate, value in scores.items()]
    ranked = heapq.nsmallest(config.n_results, order) if len(order) > 4 * config.n_results else sorted(order)
    return [
        Scored(movie_id, -negative, reason[movie_id][1] if movie_id in reason else None)
        for negative, _, movie_id in ranked[: config.n_results]
    ]


def rank_arrays(
    history: History, lists: Mapping[str, Any], popularity: Popularity, config: RankConfig,
    exclude: Collection[str] = (),
) -> list[Scored]:
    """`rank` over compact neighbour lists: each value of `lists` has `indices` (int32), `similarities`
    (float32) and `table` (its `IdTable`: `ids`, `index`), all lists over one table. Lists over several
    tables (a cache dropped in the middle of a request) are ranked by the reference `rank`."""
    if config.tail_slots:  # RankConfig.tail_slots: two single-score passes merged by `with_tail`
        return with_tail(rank_arrays, history, lists, popularity, config, exclude)
    history_seen: dict[str, float | None] = {}
    for movie_id, rating in history:
        history_seen.setdefault(movie_id, rating)
    pop = normalize_popularity(popularity)
    # The pairs, in the reference's order (history position, then list order), so the sums match it.
    sources: list[str] = []
    weights: list[float] = []
    parts: list[Any] = []
    for position, (source, rating) in enumerate(history_seen.items()):
        weight = config.weight_of(rating) * config.recency_decay**position
        found = lists.get(source)
        if weight == 0 or found is None or not len(found.indices):
            continue
        sources.append(source)
        weights.append(weight)
        parts.append(found)
    if not parts:
        return rank(history, {}, pop, config, exclude)
    table = parts[0].table
    if any(p.table is not table for p in parts):
        return rank(history, lists, popularity, config, exclude)
    ids, index = table.ids, table.index
    size = len(ids)  # a snapshot: ids appended later by another request are not in these lists
    lengths = [len(p.indices) for p in parts]
    candidates = np.concatenate([p.indices for p in parts])
    similarities = np.concatenate([p.similarities for p in parts]).astype(np.float64)
    pair_source = np.repeat(np.arange(len(parts)), lengths)
    powered = similarities if config.similarity_exponent == 1.0 else \
        np.copysign(np.abs(similarities) ** config.similarity_exponent, similarities)
    contributions = np.repeat(np.array(weights), lengths) * powered

    # `exclude` holds the user's whole history: it is matched from the smaller side, its ids looked up in
    # the table or the candidates' ids looked up in it (at most the pairs' count), in C (map), never in a
    # Python loop.
    blocked = np.zeros(size, dtype=bool)
    blocked[[i for m in history_seen if (i := index.get(m)) is not None and i < size]] = True
    if exclude and len(exclude) <= len(candidates):
        found = np.fromiter(map(index.get, exclude, itertools.repeat(size)), dtype=np.int64, count=len(exclude))
        blocked[found[found < size]] = True
    elif exclude:
        unique = np.unique(candidates)
        blocked[unique] |= np.fromiter(map(exclude.__contains__, map(ids.__getitem__, unique.tolist())),
                                       dtype=bool, count=len(unique))
    keep = ~blocked[candidates] & (similarities >= config.min_similarity)
    candidates, contributions, pair_source = candidates[keep], contributions[keep], pair_source[keep]
    affinity = np.bincount(candidates, weights=contributions, minlength=size)

    # Personalized scores of the positive-affinity candidates, in NumPy.
    positive = np.flatnonzero(affinity > 0)
    scores: np.ndarray = affinity[positive].astype(np.float64)
    damping = user_damping(history_seen, pop, config)  # per user (RankConfig.damping_slope)
    counts = viewer_counts(popularity) if damping else {}
    if counts:
        scores = scores / (_aligned(table, counts, size)[positive] + 1.0) ** damping
    scores = scores + config.popularity_weight * _aligned(table, pop, size)[positive]
    n = config.n_results
    if len(scores) > n:  # only those at or above the n-th best score can make the list (ties kept)
        chosen = scores >= np.partition(scores, len(scores) - n)[len(scores) - n]
        positive, scores = positive[chosen], scores[chosen]
    order = [(-score, -pop.get(ids[i], 0.0), ids[i]) for i, score in zip(positive.tolist(), scores.tolist(),
                                                                         strict=True)]

    # Popular movies in order (as in `rank`): those without a positive affinity score by popularity.
    taken = 0
    for candidate, value in pop.items():
        i = index.get(candidate)
        value_affinity = float(affinity[i]) if i is not None and i < size else 0.0
        if candidate in history_seen or candidate in exclude or value_affinity < 0:
            continue
        if value_affinity <= 0:
            order.append((-config.popularity_weight * value, -value, candidate))
        taken += 1
        if taken >= n and config.popularity_weight >= 0:
            break
    ranked = sorted(order)[:n]

    # "because": the largest positive contribution to each chosen movie, ties by the source's id.
    chosen_ids = np.array([index[m] for _, _, m in ranked if m in index and index[m] < size], dtype=np.int64)
    reason: dict[str, tuple[float, str]] = {}
    if len(chosen_ids):
        flags = np.zeros(size, dtype=bool)
        flags[chosen_ids] = True
        mask = flags[candidates] & (contributions > 0)
        for i, contribution, s in zip(candidates[mask].tolist(), contributions[mask].tolist(),
                                      pair_source[mask].tolist(), strict=True):
            movie_id, source = ids[i], sources[s]
            best = reason.get(movie_id)
            if best is None or contribution > best[0] or (contribution == best[0] and source < best[1]):
                reason[movie_id] = (contribution, source)
    return [Scored(movie_id, -negative, reason[movie_id][1] if movie_id in reason else None)
            for negative, _, movie_id in ranked]


def _aligned(table: Any, values: Mapping[str, float], size: int) -> np.ndarray:
    """`values` as a float64 array over the table's first `size` ids (0 where absent). Memoized on the
    table (its `memo` dict, a few entries) while the same mapping object and size come back: the popular
    list changes once per TTL, so most requests reuse it."""
    memo = getattr(table, "memo", None)
    key = id(values)
    if memo is not None:
        held = memo.get(key)
        if held is not None and held[0] is values and held[1] == size:
            return held[2]
    index = table.index
    out = np.zeros(size)
    found = [(i, v) for m, v in values.items() if (i := index.get(m)) is not None and i < size]
    if found:
        out[[i for i, _ in found]] = [v for _, v in found]
    if memo is not None:
        if len(memo) >= 4:
            memo.clear()
        memo[key] = (values, size, out)
    return out

