"""The gate's scoring: one function that scores a model recipe on a temporal holdout of the store.

The training role calls it to decide a promotion; `python -m evaluation offline` calls it to reproduce
the active version's figures. Both therefore report the same numbers, from the same code as the service:
neighbours through `inference.sources.BlendedVectors` over ChromaDB collections, `inference.ranking.rank`
with the version's `RankConfig` (its history length and neighbour count included) and the service's
popular list size.

Semantics (pure functions over plain data, the shell at the bottom):

* The temporal holdout (`temporal_split`): for every user with at least `min_movies` distinct movies,
  the most recent `holdout_fraction` of them by first interaction time (at least one; ties by movie id)
  are held out; everything before that user's cutoff is held in. Users below `min_movies` stay held in
  and are not scored. Only events up to `until` (the version's watermark) take part, so the split can be
  rebuilt later from a store that kept growing.
* A recipe (collaborative config + ranking config) is fitted on the held-in pairs only (a temporary
  collection), scored, and the temporary collection dropped; the version then serves the same recipe
  fitted on the whole store at the watermark (docs/evaluation.md says why).
* The popular list is the held-in viewer counts of watched movies (as `db_utils.queries.popular_movies`).
* Metrics over the scored users (a seeded sample of at most `max_users`): hit rate at 10 and 20 (per
  user, held-out movies found among the first k over min(k, held-out count)), the share of users with
  a hit, NDCG at 20 (binary relevance), MRR of the first hit, global coverage (distinct recommended movies /
  movies in the store), with the hit rate's standard error (users as units).
* `decide`: promote when the candidate's hit rate at 20 beats most popular's and is not below the
  active version's by more than `tolerance` (absolute); the first version needs to beat most popular only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from evaluation import metrics

Event = tuple[int, str, datetime, datetime, int | None, bool]
"""(user_id, movie_id, first time, last time, rating or None, watched) as `interaction_events` gives."""


@dataclass(frozen=True)
class GateConfig:
    """How the gate splits and decides (every field is a TRAIN_* setting of the training role).

    holdout_fraction: share of each user's most recent distinct movies held out (0.2).
    min_movies: users with fewer distinct movies are not scored (2).
    max_users: score a seeded sample of at most this many users (2,000: the figure's standard error is
        about 1 point at a 15% hit rate; the cost stays bounded on a million-user store).
    tolerance: how far (absolute hit rate at 20) a candidate may fall below the active version (0.01).
    seed: seeds the user sample.
    """

    holdout_fraction: float = 0.2
    min_movies: int = 2
    max_users: int = 2000
    tolerance: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("the holdout fraction must be between 0 and 1 (exclusive).")
        if self.min_movies < 2:
            raise ValueError("min_movies must be at least 2 (a scored user needs a history and a target).")
        if self.max_users < 1:
            raise ValueError("max_users must be at least 1.")
        if self.tolerance < 0:
            raise ValueError("the tolerance must not be negative.")


@dataclass(frozen=True)
class TemporalSplit:
    """The held-in events, each scored user's held-out movies and the cutoffs."""

    held_in: list[Event]
    held_out: dict[int, list[str]]
    users: list[int]
    until: datetime | None = None
    stats: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ pure


def temporal_split(events: Iterable[Event], config: GateConfig, until: datetime | None = None) -> TemporalSplit:
    """Each user's most recent `holdout_fraction` of distinct movies held out (see the module docstring)."""
    by_user: dict[int, list[Event]] = {}
    for event in events:
        if until is not None and event[2] > until:
            continue
        by_user.setdefault(event[0], []).append(event)
    held_in: list[Event] = []
    held_out: dict[int, list[str]] = {}
    for user, rows in by_user.items():
        if len(rows) < config.min_movies:
            held_in.extend(rows)
            continue
        rows.sort(key=lambda e: (e[2], e[1]))
        n_out = max(1, math.floor(config.holdout_fraction * len(rows)))
        held_in.extend(rows[:-n_out])
        held_out[user] = [e[1] for e in rows[-n_out:]]
    eligible = sorted(held_out)
    users = eligible
    if len(eligible) > config.max_users:
        rng = np.random.default_rng(config.seed)
        users = sorted(int(u) for u in rng.choice(eligible, size=config.max_users, replace=False))
    held_in.sort(key=lambda e: (e[0], e[1]))
    return TemporalSplit(held_in, {u: held_out[u] for u in users}, users, until,
                         {"events": sum(len(r) for r in by_user.values()), "held_in": len(held_in),
                          "eligible_users": len(eligible), "scored_users": len(users)})


def histories(held_in: Iterable[Event], users: Iterable[int], limit: int | None = None
              ) -> tuple[dict[int, list[tuple[str, int | None]]], dict[int, set[str]]]:
    """Per user: the held-in movies most recent first (by last time, ties by id, as the service's
    history query orders them), cut to `limit`, and the whole held-in set (what the answer excludes)."""
    wanted = set(users)
    rows: dict[int, list[Event]] = {}
    for event in held_in:
        if event[0] in wanted:
            rows.setdefault(event[0], []).append(event)
    ordered: dict[int, list[tuple[str, int | None]]] = {}
    seen: dict[int, set[str]] = {}
    for user in wanted:
        mine = sorted(rows.get(user, []), key=lambda e: e[1])
        mine.sort(key=lambda e: e[3], reverse=True)
        ordered[user] = [(e[1], e[4]) for e in (mine if limit is None else mine[:limit])]
        seen[user] = {e[1] for e in mine}
    return ordered, seen


def popular(held_in: Iterable[Event], limit: int) -> list[tuple[str, int]]:
    """Movies by distinct viewers of their watched rows, most first, ties by id (`popular_movies`' rule)."""
    counts: dict[str, int] = {}
    for event in held_in:
        if event[5]:
            counts[event[1]] = counts.get(event[1], 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def score_lists(recs: Mapping[int, Sequence[str]], held_out: Mapping[int, Sequence[str]],
                store_movies: int) -> dict[str, Any]:
    """The gate's metrics of recommendation lists against each user's held-out movies.

    hit_rate_at_k: per user, the held-out movies found in the first k divided by min(k, held-out count),
    averaged over users (users are the units; its standard error is over users): the figure the gate
    decides on, and the "hit rate" of a split that holds out several movies per user;
    user_hit_rate_at_20: the share of users with at least one held-out movie in their 20; ndcg_at_20
    (binary relevance) and mrr (first hit): means over users."""
    users = sorted(held_out)
    hit20: list[float] = []
    hit10: list[float] = []
    any20: list[float] = []
    ndcg: list[float] = []
    rr: list[float] = []
    shown: set[str] = set()
    for user in users:
        targets = set(held_out[user])
        listed = list(recs.get(user, ()))[:20]
        shown.update(listed)
        ranks = [i for i, movie in enumerate(listed) if movie in targets]
        hit20.append(len(ranks) / min(20, len(targets)))
        hit10.append(sum(1 for i in ranks if i < 10) / min(10, len(targets)))
        any20.append(1.0 if ranks else 0.0)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(20, len(targets))))
        ndcg.append(sum(1.0 / math.log2(i + 2) for i in ranks) / ideal)
        rr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
    n = len(users)

    def mean(values: Sequence[float]) -> float:
        return round(float(np.mean(values)), 6) if len(values) else 0.0

    se = float(np.std(hit20, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {
        "users": n,
        "held_out": sum(len(held_out[u]) for u in users),
        "hit_rate_at_20": mean(hit20),
        "hit_rate_at_20_se": round(se, 6),
        "hit_rate_at_10": mean(hit10),
        "user_hit_rate_at_20": mean(any20),
        "ndcg_at_20": mean(ndcg),
        "mrr": mean(rr),
        "coverage_global": round(len(shown) / store_movies, 6) if store_movies else 0.0,
    }


def decide(candidate: Mapping[str, Any], most_popular: Mapping[str, Any], active: Mapping[str, Any] | None,
           tolerance: float) -> tuple[bool, str]:
    """(promote?, reason) by the gate's rule on hit rate at 20 (module docstring)."""
    ours, pop = candidate["hit_rate_at_20"], most_popular["hit_rate_at_20"]
    if candidate.get("users", 0) == 0:
        return False, "no user could be scored: the store has no user with two or more movies"
    if ours <= pop:
        return False, f"hit rate at 20 {ours:.4f} does not beat most popular's {pop:.4f}"
    if active is not None and ours < active["hit_rate_at_20"] - tolerance:
        return False, (f"hit rate at 20 {ours:.4f} is more than {tolerance:.4f} below the active version's "
                       f"{active['hit_rate_at_20']:.4f}")
    against = "" if active is None else f", active version {active['hit_rate_at_20']:.4f}"
    return True, f"hit rate at 20 {ours:.4f} beats most popular {pop:.4f}{against}"


def rank_lists(user_histories: Mapping[int, Sequence[tuple[str, int | None]]], seen: Mapping[int, set[str]],
               neighbours: Mapping[str, Sequence[tuple[str, float]]], popular_list: Sequence[tuple[str, int]],
               rank_config: Any) -> dict[int, list[str]]:
    """The service's ranking for every user (the same `rank`, exclusion included)."""
    from inference.ranking import normalize_popularity, rank

    pop = normalize_popularity(popular_list)
    return {u: [s.movie_id for s in rank(h, neighbours, pop, rank_config, exclude=seen.get(u, ()))]
            for u, h in user_histories.items()}


def popular_lists(seen: Mapping[int, set[str]], popular_list: Sequence[tuple[str, int]], n: int = 20
                  ) -> dict[int, list[str]]:
    """Most popular: the first `n` held-in popular movies each user has not seen."""
    return {u: [m for m, _ in popular_list if m not in s][:n] for u, s in seen.items()}


# ----------------------------------------------------------------------------------------------- shell


@dataclass(frozen=True)
class Recipe:
    """What a version is made of besides data: the collaborative fit's config and the ranking's."""

    collab: Any
    rank: Any

    def as_dict(self) -> dict[str, Any]:
        return {"collab": dataclasses.asdict(self.collab), "rank": dataclasses.asdict(self.rank)}

    @classmethod
    def from_version(cls, version: Any) -> Recipe:
        """The recipe a `db_utils.model_versions.VersionRow` records (unknown fields ignored)."""
        from embeddings.collaborative import CollabConfig
        from inference.config import RankConfig

        known_collab = {f.name for f in dataclasses.fields(CollabConfig)}
        collab = {k: v for k, v in version.collab_config.items() if k in known_collab}
        # a version recorded before the matrix weighting existed was fitted on the binary matrix
        collab.setdefault("weighting", "binary")
        return cls(CollabConfig(**collab), RankConfig.from_record(version.rank_config))


def fetch_neighbours(source: Any, movie_ids: Sequence[str], k: int, chunk: int = 500
                     ) -> dict[str, list[tuple[str, float]]]:
    """Neighbour lists of the ids through a `VectorSource`, in batches (as the service's misses)."""
    out: dict[str, list[tuple[str, float]]] = {}
    ids = sorted(set(movie_ids))
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        found = source.neighbours(part, k)
        out.update({m: [(n, s) for n, s in found.get(m, []) if n != m] for m in part})
    return out


def service_lists(split: TemporalSplit, source: Any, rank_config: Any, *, popular_size: int,
                  user_histories: Mapping[int, Sequence[tuple[str, int | None]]] | None = None,
                  seen: Mapping[int, set[str]] | None = None) -> dict[int, list[str]]:
    """The service's answer to every scored user (the config's history length and neighbour count, the
    service's popular list); `user_histories` and `seen` replace the held-in ones (the cold-start probe)."""
    if user_histories is None or seen is None:
        user_histories, seen = histories(split.held_in, split.users, rank_config.history_size)
    popular_list = popular(split.held_in, popular_size)
    wanted = {m for h in user_histories.values() for m, _ in h}
    neighbours = fetch_neighbours(source, sorted(wanted), rank_config.neighbours_k)
    return rank_lists(user_histories, seen, neighbours, popular_list, rank_config)


def score_source(split: TemporalSplit, source: Any, rank_config: Any, *, popular_size: int,
                 store_movies: int) -> dict[str, Any]:
    """Score one vector source + ranking config on the split, exactly as the service would answer."""
    return score_lists(service_lists(split, source, rank_config, popular_size=popular_size), split.held_out,
                       store_movies)


def score_most_popular(split: TemporalSplit, *, popular_size: int, store_movies: int) -> dict[str, Any]:
    """Most popular on the same split (the held-in popular list, unseen movies only)."""
    _, seen = histories(split.held_in, split.users)
    return score_lists(popular_lists(seen, popular(split.held_in, popular_size)), split.held_out, store_movies)


def fit_source(split: TemporalSplit, recipe: Recipe, *, content: Any, make_collab: Callable[[], Any],
               fit: Callable[[list[tuple[int, str]], Any], tuple[list[str], np.ndarray]]) -> Any:
    """Fit the recipe's collaborative vectors on the held-in pairs into the store `make_collab()` gives (a
    temporary collection, emptied first) and blend them with `content` as the service does."""
    from inference.sources import blended

    pairs = sorted({(e[0], e[1]) for e in split.held_in})
    ids, vectors = fit(pairs, recipe.collab)
    collab = make_collab()
    stale = sorted(collab.ids())
    if stale:
        collab.delete(stale)
    if ids:
        collab.upsert(ids, vectors)
    collab.stamp_version()
    return blended(recipe.rank, content, collab)


def score_recipe(split: TemporalSplit, recipe: Recipe, *, content: Any, make_collab: Callable[[], Any],
                 fit: Callable[[list[tuple[int, str]], Any], tuple[list[str], np.ndarray]], service: Any,
                 store_movies: int) -> dict[str, Any]:
    """`fit_source`, then the service's lists scored on the split."""
    source = fit_source(split, recipe, content=content, make_collab=make_collab, fit=fit)
    return score_source(split, source, recipe.rank, popular_size=service.popular_size, store_movies=store_movies)


def gate_report(events: Sequence[Event], config: GateConfig, until: datetime | None, candidate: Recipe,
                active: Recipe | None, *, content: Any, make_collab: Callable[[str], Any], fit: Callable[..., Any],
                active_fit: Callable[..., Any] | None = None, service: Any, baselines: bool = False
                ) -> dict[str, Any]:
    """The gate's report: the candidate recipe, the active version's recipe (None: first version) and
    most popular, scored on one temporal split (`make_collab(role)` gives the temporary collection of a
    role, `"candidate"` or `"active"`). With `baselines`, item-kNN, EASE and ALS on the same split too. When the active
    recipe equals the candidate's and both use the same fit, its figures are the candidate's (the same
    recipe on the same split scores the same) and it is not fitted twice."""
    split = temporal_split(events, config, until)
    store_movies = len({e[1] for e in events if until is None or e[2] <= until})
    common = {"content": content, "service": service, "store_movies": store_movies}
    source = fit_source(split, candidate, content=content, make_collab=lambda: make_collab("candidate"), fit=fit)
    ours_lists = service_lists(split, source, candidate.rank, popular_size=service.popular_size)
    ours = score_lists(ours_lists, split.held_out, store_movies)
    report: dict[str, Any] = {
        "candidate": ours,
        "most_popular": score_most_popular(split, popular_size=service.popular_size, store_movies=store_movies),
        "active": None,
        "split": split.stats,
        "gate": dataclasses.asdict(config),
        "until": until.isoformat() if until is not None else None,
    }
    if active is not None:
        active_fit = active_fit or fit
        if active.as_dict() == candidate.as_dict() and active_fit is fit:
            report["active"] = dict(ours)
        else:
            report["active"] = score_recipe(split, active, make_collab=lambda: make_collab("active"),
                                            fit=active_fit, **common)
    if baselines:
        lists = baseline_lists(split)
        report["baselines"] = {name: score_lists(recs, split.held_out, store_movies) for name, recs in lists.items()}
        strong = [name for name in ("ease", "als") if name in lists]
        if strong:
            best = max(strong, key=lambda name: report["baselines"][name]["hit_rate_at_20"])
            report["paired_test"] = {"against": best, **metrics.paired_rates(
                per_user_hits(ours_lists, split.held_out), per_user_hits(lists[best], split.held_out))}
        report["cold_start"] = cold_start_report(split, ours_lists, lists, lambda h, s: service_lists(
            split, source, candidate.rank, popular_size=service.popular_size, user_histories=h, seen=s),
            service.popular_size)
    return report


EASE_MAX_MOVIES = 12_000
"""EASE inverts a movies x movies matrix: above this many movies (about 1.2 GB in float64) it is left out."""


def baseline_lists(split: TemporalSplit) -> dict[str, dict[int, list[str]]]:
    """item-kNN, EASE (lambda 50) and ALS (`implicit`, 128 factors) lists on the split's held-in matrix
    (`evaluation.baselines`: the strong baselines of docs/evaluation.md); EASE is left out above
    `EASE_MAX_MOVIES` movies."""
    from embeddings.collaborative import interaction_matrix
    from evaluation.baselines import als, ease, item_knn

    data = interaction_matrix((e[0], e[1]) for e in split.held_in)
    rows = set(data.users)
    known = [u for u in split.users if u in rows]
    out = {"item_knn": item_knn(data, known)}
    if len(data.movies) <= EASE_MAX_MOVIES:
        out["ease"] = ease(data, known)
    out["als"] = als(data, known)
    return out


def per_user_hits(recs: Mapping[int, Sequence[str]], held_out: Mapping[int, Sequence[str]], k: int = 20
                  ) -> list[float]:
    """Each scored user's hit rate at k as the gate counts it (found / min(k, held out)), users sorted."""
    return [len(set(list(recs.get(u, ()))[:k]) & set(held_out[u])) / min(k, len(held_out[u]))
            for u in sorted(held_out)]


PROBE_LENGTHS: dict[str, int] = {"users_1": 1, "users_2-4": 3, "users_5-19": 10}
"""The cold-start probe: each bucket's users are every scored user, known by this many of their most
recent held-in movies only (the demo has no user below 19 movies; the models stay fitted on everything)."""


def cold_movie_targets(split: TemporalSplit, max_viewers: int = metrics.COLD_MOVIE_VIEWERS
                       ) -> dict[int, list[str]]:
    """Per scored user, the held-out movies with fewer than `max_viewers` held-in viewers (users with
    none are left out)."""
    counts: dict[str, int] = {}
    for pair in {(e[0], e[1]) for e in split.held_in}:
        counts[pair[1]] = counts.get(pair[1], 0) + 1
    out = {u: [m for m in split.held_out[u] if counts.get(m, 0) < max_viewers] for u in split.users}
    return {u: movies for u, movies in out.items() if movies}


def cold_start_report(split: TemporalSplit, ours: Mapping[int, Sequence[str]],
                      lists: Mapping[str, Mapping[int, Sequence[str]]],
                      service_probe: Callable[[dict[int, list[tuple[str, int | None]]], dict[int, set[str]]],
                                              Mapping[int, Sequence[str]]],
                      popular_size: int) -> dict[str, Any]:
    """Hit rate at 20 (the gate's) per recommender in the cold-start buckets: the probe (`PROBE_LENGTHS`;
    the service ranks the cut history and excludes it; item-kNN and EASE score it; most popular skips
    it; ALS is left out, it would need a fold-in) and, on the full lists, the held-out movies with fewer
    than `metrics.COLD_MOVIE_VIEWERS` held-in viewers."""
    from embeddings.collaborative import interaction_matrix
    from evaluation.baselines import ease, item_knn

    full, seen_all = histories(split.held_in, split.users)
    data = interaction_matrix((e[0], e[1]) for e in split.held_in)
    popular_list = popular(split.held_in, popular_size)
    out: dict[str, Any] = {"protocol": "every scored user known by only their k most recent held-in movies "
                                       f"({', '.join(f'{b}: k = {k}' for b, k in PROBE_LENGTHS.items())}); "
                                       "models fitted on all held-in data"}
    for bucket, k in PROBE_LENGTHS.items():
        cut = {u: h[:k] for u, h in full.items()}
        seen = {u: {m for m, _ in h} for u, h in cut.items()}
        movies = {u: [m for m, _ in h] for u, h in cut.items()}
        probe = {"service": service_probe(cut, seen), "most_popular": popular_lists(seen, popular_list),
                 "item_knn": item_knn(data, split.users, histories=movies)}
        if "ease" in lists:
            probe["ease"] = ease(data, split.users, histories=movies)
        out[bucket] = {name: {"users": len(split.users), "hit_rate_at_20": round(float(np.mean(
            per_user_hits(recs, split.held_out))), 6) if split.users else 0.0} for name, recs in probe.items()}
    cold = cold_movie_targets(split)
    full_lists = {"service": ours, "most_popular": popular_lists(seen_all, popular_list), **lists}
    label = f"movies_under_{metrics.COLD_MOVIE_VIEWERS}_viewers"
    out[label] = {name: {"users": len(cold), "hit_rate_at_20": round(float(np.mean(per_user_hits(recs, cold))), 6)
                         if cold else 0.0} for name, recs in full_lists.items()}
    return out


def report_markdown(report: Mapping[str, Any]) -> str:
    """The gate's figures as a Markdown table: candidate, active version, most popular."""
    rows = {name: value for name, value in report.items() if isinstance(value, Mapping) and "hit_rate_at_20" in value}
    return metrics.markdown_table(rows, columns=("users", "hit_rate_at_20", "hit_rate_at_10", "user_hit_rate_at_20",
                                                 "ndcg_at_20", "mrr", "coverage_global"))
