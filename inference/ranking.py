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
one id table plus float32 similarities (`inference.cache.NeighbourList`): Python touches each history
movie once and the ~20 movies that make the list; the pairs' affinity sums, the exclusion and the
popular list are a fixed number of NumPy calls over arrays indexed by the table (the popular list's
arrays made once per popular list and table). The service serves `rank_arrays`, and `rank_popular` (the
same list in one walk down the popular list) to users none of whose history movies has a neighbour list.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

import numpy as np

from inference.config import RankConfig

T = TypeVar("T")
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
    return damping_at(mean_popularity(history, pop) if config.damping_slope else None, config)


def mean_popularity(history: Iterable[str], pop: Mapping[str, float]) -> float | None:
    """The mean popularity_norm of the history movies (0 outside `pop`); None for an empty history."""
    values = [pop.get(m, 0.0) for m in history]
    return sum(values) / len(values) if values else None


def damping_at(mean: float | None, config: RankConfig) -> float:
    """`user_damping` of a history whose mean popularity is `mean` (None: empty, the center's damping),
    so the head's and the tail's scores share one mean."""
    if not config.damping_slope or mean is None:
        return config.popularity_damping
    return config.popularity_damping + config.damping_slope * (config.damping_center - mean)


def with_tail(ranker: Any, history: History, neighbours: Any, popularity: Popularity, config: RankConfig,
              exclude: Collection[str] = ()) -> list[Scored]:
    """`ranker`'s list with its last `config.tail_slots` places taken from the tail ranking (see the module
    docstring): `ranker` called with each of `passes(config)`, merged by `merge_tail`."""
    head_config, tail_config = passes(config)
    head = ranker(history, neighbours, popularity, head_config, exclude)
    tail = ranker(history, neighbours, popularity, tail_config, exclude)
    return [s for part in merge_tail(head, tail, config, lambda s: s.movie_id) for s in part]


def merge_tail(head: Sequence[T], tail: Sequence[T], config: RankConfig,
               movie_of: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """The tail slots' rule, for `rank` and `rank_arrays` alike: the head's first n - tail_slots, then the
    tail's best not listed yet, up to n in all."""
    kept = list(head[:max(config.n_results - config.tail_slots, 0)])
    listed = {movie_of(x) for x in kept}
    return kept, [x for x in tail if movie_of(x) not in listed][:config.n_results - len(kept)]


def passes(config: RankConfig) -> list[RankConfig]:
    """The one-score configs `config` ranks with: itself, or with tail slots the head's (`tail_slots` 0)
    and `tail_config()`; made once per config object (a served model holds one)."""
    if not config.tail_slots:
        return [config]
    held = _PASSES.get(id(config))
    if held is not None and held[0] is config:
        return held[1]
    made = [replace(config, tail_slots=0), config.tail_config()]
    if len(_PASSES) >= 16:
        _PASSES.clear()
    _PASSES[id(config)] = (config, made)
    return made


_PASSES: dict[int, tuple[RankConfig, list[RankConfig]]] = {}


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


def rank_popular(history: History, popularity: Popularity, config: RankConfig,
                 exclude: Collection[str] = ()) -> list[Scored]:
    """`rank` of a user none of whose history movies has a neighbour list (a new user, a history without
    vectors, a failing vector store): the popular movies in order, every seen one skipped, scored by
    popularity alone, no "because". The same list as `rank(history, {}, ...)` in one walk down the popular
    list, where the reference builds every score twice with tail slots (0.2 ms a request, about half of
    an unknown user's answer). A negative popularity_weight reverses the order: left to the reference."""
    if config.popularity_weight < 0:
        return rank(history, {}, popularity, config, exclude)
    weight, n = config.popularity_weight, config.n_results
    history_ids = {movie_id for movie_id, _ in history}
    out: list[Scored] = []
    for movie_id, value in normalize_popularity(popularity).items():
        if len(out) >= n:
            break
        if movie_id not in exclude and movie_id not in history_ids:
            out.append(Scored(movie_id, weight * value))
    return out


def rank_arrays(
    history: History, lists: Mapping[str, Any], popularity: Popularity, config: RankConfig,
    exclude: Collection[str] = (), reasons: bool = True,
) -> list[Scored]:
    """`rank` over compact neighbour lists: each value of `lists` has `indices` (int32), `similarities`
    (float32) and `table` (its `IdTable`: `ids`, `index`, `memo`, `indices_of`), all lists over one table.
    Lists over several tables (a cache dropped in the middle of a request) are ranked by the reference.
    `reasons=False` leaves every `because` None (the plain-text answer does not show them).

    Python touches each history movie once (its weights) and the few movies that can make the list; the
    pairs, the exclusion and the popular list are a fixed number of NumPy calls over arrays indexed by the
    table (the popular list's arrays made once per popular list and table: `_PopularView`). With tail slots
    the head's and the tail's scores share everything but their weights, affinity and top (`with_tail`'s
    list, in one pass over the pairs)."""
    configs = passes(config)
    history_seen: dict[str, float | None] = {}
    for movie_id, rating in history:
        history_seen.setdefault(movie_id, rating)
    pop = normalize_popularity(popularity)
    weight_of, _ = _weights(config)
    decays = [_weights(c)[1] for c in configs]
    sources: list[str] = []
    weights: list[list[float]] = [[] for _ in configs]
    parts: list[Any] = []
    get = lists.get
    for position, (source, rating) in enumerate(history_seen.items()):
        found = get(source)
        if found is None or not len(found.indices):
            continue
        base = weight_of(rating)
        each = [base * (decay[position] if position < len(decay) else c.recency_decay**position)
                for c, decay in zip(configs, decays, strict=True)]
        if not any(each):  # a zero weight in one pass only adds zeros there: the same as absent
            continue
        sources.append(source)
        parts.append(found)
        for held, weight in zip(weights, each, strict=True):
            held.append(weight)
    if not parts:
        return rank_popular(history, pop, config, exclude)
    table = parts[0].table
    lengths = [len(p.indices) for p in parts]
    if sum(lengths) <= SMALL_PAIRS or any(p.table is not table for p in parts):
        # few pairs: the reference's dict loop beats NumPy's fixed cost over table-sized arrays; lists over
        # several tables (a cache dropped in the middle of a request): only the reference can rank them
        found_reasons = rank(history, lists, popularity, config, exclude)
        return found_reasons if reasons else [s._replace(because=None) for s in found_reasons]
    damped = any(c.popularity_damping or c.damping_slope for c in configs)
    view = _PopularView.of(table, pop, viewer_counts(popularity) if damped else _NO_COUNTS)
    ids, index, size = table.ids, table.index, view.size  # every index in these lists is below size

    # The pairs in the reference's order (history position, then list order), so the sums match it.
    candidates = np.concatenate([p.indices for p in parts])
    similarities = np.concatenate([p.similarities for p in parts]).astype(np.float64)
    powered = similarities if config.similarity_exponent == 1.0 else \
        np.copysign(np.abs(similarities) ** config.similarity_exponent, similarities)
    below = similarities < config.min_similarity if similarities.min() < config.min_similarity else None
    # Slot `size` stands for every id the table lacks. Seen movies (the history's and `exclude`, the whole
    # history) get NaN affinity: neither > 0 (scored) nor >= 0 (filled from the popular list). `exclude` is
    # matched from its smaller side: its ids looked up in the table, or the ids of the candidates and the
    # popular list looked up in it, in C (map), never in a Python loop.
    if not exclude or len(exclude) <= len(candidates) + len(view.order):
        seen = np.fromiter(map(index.get, itertools.chain(history_seen, exclude), itertools.repeat(size)),
                           dtype=np.intp, count=len(history_seen) + len(exclude))
    else:
        check = np.unique(np.concatenate([candidates, view.order]))
        seen = np.concatenate([
            np.fromiter(map(index.get, history_seen, itertools.repeat(size)), dtype=np.intp, count=len(history_seen)),
            check[np.fromiter(map(exclude.__contains__, map(ids.__getitem__, check.tolist())), dtype=bool,
                              count=len(check))]])

    mean = mean_popularity(history_seen, pop) if any(c.damping_slope for c in configs) else None
    tops = []
    for c, held in zip(configs, weights, strict=True):
        contributions = np.repeat(held, lengths) * powered
        if below is not None:  # as if absent: adds nothing, names no reason
            contributions[below] = 0.0
        affinity = np.bincount(candidates, weights=contributions, minlength=size + 1)
        affinity[seen] = np.nan
        tops.append((_top(affinity, view, damping_at(mean, c), c, ids), contributions))
    if len(tops) == 2:  # the tail slots, as `with_tail`
        merged = merge_tail(tops[0][0], tops[1][0], config, lambda t: t[2])
        tops = [(merged[0], tops[0][1]), (merged[1], tops[1][1])]
    out: list[Scored] = []
    for ranked, contributions in tops:
        because = _reasons(ranked, ids, index, size, candidates, contributions, lengths, sources) if reasons \
            else {}
        out.extend(Scored(movie_id, -negative, because.get(movie_id)) for negative, _, movie_id in ranked)
    return out


def _top(affinity: np.ndarray, view: _PopularView, damping: float, config: RankConfig,
         ids: Sequence[str]) -> list[tuple[float, float, str]]:
    """The first `config.n_results` (-score, -popularity, id) of one score: the positive-affinity movies
    damped by `damping` plus the popular movies that fill (as `rank`), sorted."""
    # Only the positive candidates at or above the n-th best score can make the list (ties kept).
    n = config.n_results
    positive = np.flatnonzero(affinity > 0)
    scores: np.ndarray = affinity[positive]
    if damping and view.log_viewers is not None:  # (viewers + 1) ** damping, the damping per user
        scores = scores / np.exp(damping * view.log_viewers[positive])
    values = view.values[positive]
    scores = scores + config.popularity_weight * values
    if len(scores) > n:
        chosen = scores >= np.partition(scores, len(scores) - n)[len(scores) - n]
        positive, scores, values = positive[chosen], scores[chosen], values[chosen]
    order = [(-score, -value, ids[i]) for i, score, value in zip(positive.tolist(), scores.tolist(),
                                                                  values.tolist(), strict=True)]
    # Popular movies in order (as in `rank`): each unseen one without a negative affinity counts towards
    # n, and those without a positive one score by popularity alone.
    weight = config.popularity_weight
    taken, step = 0, 4 * n + 64
    for start in range(0, len(view.order), step):
        found_affinity = affinity[view.order[start:start + step]]
        eligible = np.flatnonzero(found_affinity >= 0)
        if weight >= 0:
            eligible = eligible[:n - taken]
        taken += len(eligible)
        for j in (start + eligible[found_affinity[eligible] <= 0]).tolist():
            value = view.ordered_values[j]
            order.append((-weight * value, -value, view.ordered_ids[j]))
        if weight >= 0 and taken >= n:
            break
    return sorted(order)[:n]


def _reasons(ranked: Sequence[tuple[float, float, str]], ids: Sequence[str], index: Mapping[str, int], size: int,
             candidates: np.ndarray, contributions: np.ndarray, lengths: Sequence[int],
             sources: Sequence[str]) -> dict[str, str]:
    """"because" of each ranked movie: the source of its largest positive contribution, ties by the
    source's id (as `rank`), from the pairs of the ranked movies only."""
    chosen = [i for _, _, m in ranked if (i := index.get(m, size)) < size]
    if not chosen:
        return {}
    flags = np.zeros(size, dtype=bool)
    flags[chosen] = True
    pairs = np.flatnonzero(flags[candidates] & (contributions > 0))
    source_of = np.searchsorted(np.cumsum(lengths), pairs, side="right")
    best: dict[int, tuple[float, str]] = {}
    for i, contribution, s in zip(candidates[pairs].tolist(), contributions[pairs].tolist(), source_of.tolist(),
                                  strict=True):
        held = best.get(i)
        if held is None or contribution > held[0] or (contribution == held[0] and sources[s] < held[1]):
            best[i] = (contribution, sources[s])
    return {ids[i]: source for i, (_, source) in best.items()}


def _weights(config: RankConfig) -> tuple[Callable[[float | None], float], list[float]]:
    """The config's weight per rating (a memo of `weight_of`) and its recency decay for the first 256
    positions, made once per config object (a served model holds one)."""
    held = _WEIGHTS.get(id(config))
    if held is not None and held[0] is config:
        return held[1], held[2]
    by_rating: dict[float | None, float] = {r: config.weight_of(r) for r in (None, 1, 2, 3, 4, 5)}

    def weight_of(rating: float | None) -> float:
        found = by_rating.get(rating)
        return config.weight_of(rating) if found is None else found

    decay = [config.recency_decay**position for position in range(256)]
    if len(_WEIGHTS) >= 16:
        _WEIGHTS.clear()
    _WEIGHTS[id(config)] = (config, weight_of, decay)
    return weight_of, decay


_WEIGHTS: dict[int, tuple[RankConfig, Callable[[float | None], float], list[float]]] = {}


class _PopularView:
    """One popular list over one id table: its movies' indices in popular order (`order`, the ids added
    to the table), their normalized values (`ordered_values`, `ordered_ids`), and over the whole table
    the normalized value (`values`) and log(viewers + 1) (`log_viewers`, None without viewer counts: the
    damping divisor (viewers + 1) ** damping is exp(damping * log_viewers), the damping being per user).
    Held in the table's `memo` while the same popular list comes back (it changes once
    per TTL; at most two are held, the one before a refresh and the new one); extended, never rebuilt,
    when the table grows."""

    __slots__ = ("counts", "log_viewers", "order", "ordered_ids", "ordered_values", "pop", "size",
                 "values")

    @classmethod
    def of(cls, table: Any, pop: NormalizedPopularity, counts: Mapping[str, float]) -> _PopularView:
        key = ("popular", id(pop))
        held = table.memo.get(key)
        if held is None or held.pop is not pop or held.counts is not counts:
            held = cls(table, pop, counts)
        elif held.size < len(table.ids):
            held = held.extended(table)
        else:
            return held
        if key not in table.memo and len(table.memo) >= 2:  # the list before a refresh, at most
            table.memo.clear()
        table.memo[key] = held
        return held

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (counted in the table's, so the cache's, byte bound)."""
        logs = 0 if self.log_viewers is None else self.log_viewers.nbytes
        return self.order.nbytes + self.values.nbytes + logs + 40 * len(self.ordered_ids)  # + two lists

    def __init__(self, table: Any, pop: NormalizedPopularity, counts: Mapping[str, float]):
        self.pop, self.counts = pop, counts
        self.ordered_ids = list(pop)
        self.ordered_values = list(pop.values())
        self.order = table.indices_of(self.ordered_ids).astype(np.int64)
        self.size = 0
        self.values = np.zeros(0)
        self.log_viewers: np.ndarray | None = np.zeros(0) if counts else None
        self._grow(table)

    def extended(self, table: Any) -> _PopularView:
        """A copy over the table's ids as they are now (the new ids are in no popular list position)."""
        out = object.__new__(_PopularView)
        for name in self.__slots__:
            setattr(out, name, getattr(self, name))
        out._grow(table)
        return out

    def _grow(self, table: Any) -> None:
        ids = table.ids
        size = len(ids)
        new = ids[self.size:size]
        self.values = np.concatenate([self.values, np.fromiter(map(self.pop.get, new, itertools.repeat(0.0)),
                                                               dtype=np.float64, count=len(new))])
        if self.log_viewers is not None:
            viewers = np.fromiter(map(self.counts.get, new, itertools.repeat(0.0)), dtype=np.float64, count=len(new))
            self.log_viewers = np.concatenate([self.log_viewers, np.log1p(viewers)])
        self.size = size


_NO_COUNTS: dict[str, float] = {}
SMALL_PAIRS = 100
"""Up to this many (history movie, neighbour) pairs `rank_arrays` hands the user to the reference `rank`:
`benchmarks/bench_rank.py` puts the crossover between 80 pairs (rank 0.08 ms, arrays 0.13 ms over a 27,000-id
table) and 200 (0.24 ms against 0.11 ms)."""
