"""Quality study on the gate's temporal holdout (issue 19): variants of the served model, tuned on a
validation split carved from the held-in data only, reported on the test split.

Splits (both by `evaluation.gate.temporal_split`, the gate's own rule):
* test: the store's events up to its newest, each user's most recent 20% of distinct movies held out
  (exactly the split `python -m training run` gates on and `python -m evaluation offline` re-scores);
* validation: the same rule applied again to the test split's held-in events (the test's held-out movies
  never take part).

A variant is a collaborative config (fitted on the split's held-in pairs by `embeddings.collab_job.fit_pairs`,
the trainer's fit), a `RankConfig` and the service's history length and neighbour count. Neighbours are the
exact cosine top k of each collection (ChromaDB's HNSW index with ef_search 200 is practically exact on 9k
movies; the final figures come from `python -m evaluation offline`, through ChromaDB), blended by
`inference.ranking.blend_neighbours` and ranked by the gate's `rank_lists` (the service's `rank`), scored by
the gate's `score_lists`. Baselines (EASE, ALS, item-kNN, most popular) by the gate's `baseline_lists`,
scored the same way.

    python benchmarks/temporal_study.py --out data/temporal_study.json            # needs the demo store
    python benchmarks/temporal_study.py --users 200 --out /tmp/screen.json        # a quick screen
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import numpy as np

from embeddings.collaborative import CollabConfig
from evaluation import gate, metrics
from inference.config import RankConfig, ServiceSettings
from inference.ranking import blend_neighbours

Neighbours = dict[str, list[tuple[str, float]]]


def exact_neighbours(ids: Sequence[str], vectors: np.ndarray, wanted: Sequence[str], k: int,
                     block: int = 512) -> Neighbours:
    """Each wanted movie's k most similar movies by cosine (itself excluded), ties by id (as the store)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row_of = {m: i for i, m in enumerate(ids)}
    rows = [row_of[m] for m in wanted if m in row_of]
    out: Neighbours = {}
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        sims = unit[part] @ unit.T
        sims[np.arange(len(part)), part] = -np.inf
        top = np.argpartition(-sims, min(k + 5, sims.shape[1] - 1), axis=1)[:, :k + 6]
        for r, i in enumerate(part):
            pairs = sorted(((ids[j], float(sims[r, j])) for j in top[r] if np.isfinite(sims[r, j])),
                           key=lambda p: (-round(p[1], 6), p[0]))
            out[ids[i]] = pairs[:k]
    return out


@dataclasses.dataclass
class Split:
    name: str
    split: gate.TemporalSplit
    store_movies: int


def leave_last_out(events: Sequence[gate.Event], skip_last: int) -> gate.TemporalSplit:
    """`metrics.leave_last_out` on the store's events: each user's last distinct movie (by its latest
    time, ties by the larger id) held out, after dropping the last `skip_last` ones (1: validation)."""
    rows = [metrics.Interaction(e[0], e[1], e[3]) for e in events]
    split = metrics.leave_last_out(rows, skip_last=skip_last)
    drop = {(u, m) for u, m in split.held_out.items()}
    held = {(r.user_id, r.movie_id) for r in split.held_in}
    held_in = [e for e in events if (e[0], e[1]) in held and (e[0], e[1]) not in drop]
    users = sorted(split.held_out)
    return gate.TemporalSplit(held_in, {u: [split.held_out[u]] for u in users}, users, None,
                              {"events": len(events), "held_in": len(held_in), "scored_users": len(users)})


def splits(events: Sequence[gate.Event], users: int | None, seed: int, protocol: str = "temporal"
           ) -> list[Split]:
    """The test split (the gate's) and the validation split (the same rule on the test's held-in part);
    with protocol "leave-last-out", `metrics.leave_last_out`'s test (skip_last=0) and validation
    (skip_last=1) splits of the same events (the offline harness's protocol, without its store rebuild)."""
    if protocol == "leave-last-out":
        out = []
        for name, skip in (("validation", 1), ("test", 0)):
            split = leave_last_out(events, skip)
            out.append(Split(name, split, len({e[1] for e in split.held_in})))
        return out
    config = gate.GateConfig(max_users=users or 2000, seed=seed)
    test = gate.temporal_split(events, config, None)
    val = gate.temporal_split(test.held_in, config, None)
    return [Split("validation", val, len({e[1] for e in test.held_in})),
            Split("test", test, len({e[1] for e in events}))]


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    collab: CollabConfig
    rank: RankConfig
    history_size: int = 50
    neighbours_k: int = 20
    popular_size: int = 200


class Scorer:
    """Scores variants on one split, caching the fitted vectors and neighbour lists per collab config."""

    def __init__(self, stage: Split, content_ids: list[str], content_vectors: np.ndarray,
                 fit: Callable[[list[tuple[int, str]], CollabConfig], tuple[list[str], np.ndarray]]):
        self.stage = stage
        self.content_ids, self.content_vectors = content_ids, content_vectors
        self.fit = fit
        self.pairs = sorted({(e[0], e[1]) for e in stage.split.held_in})
        self._collab: dict[Any, tuple[list[str], np.ndarray]] = {}
        self._neigh: dict[Any, Neighbours] = {}
        self.lists: dict[str, dict[int, list[str]]] = {}

    def neighbours(self, source: str, collab: CollabConfig, wanted: list[str], k: int) -> Neighbours:
        key = (source, dataclasses.astuple(collab) if source == "collab" else None, k)
        if key not in self._neigh:
            if source == "content":
                ids, vectors = self.content_ids, self.content_vectors
            else:
                ckey = dataclasses.astuple(collab)
                if ckey not in self._collab:
                    self._collab[ckey] = self.fit(self.pairs, collab)
                ids, vectors = self._collab[ckey]
            movies = sorted({e[1] for e in self.stage.split.held_in})
            self._neigh[key] = exact_neighbours(ids, np.asarray(vectors, dtype=np.float64), movies, k)
        return self._neigh[key]

    def score(self, variant: Variant) -> dict[str, Any]:
        split = self.stage.split
        user_histories, seen = gate.histories(split.held_in, split.users, variant.history_size)
        popular_list = gate.popular(split.held_in, variant.popular_size)
        wanted = sorted({m for h in user_histories.values() for m, _ in h})
        sources = []
        if variant.rank.content_weight:
            sources.append((variant.rank.content_weight,
                            self.neighbours("content", variant.collab, wanted, variant.neighbours_k)))
        if variant.rank.collab_weight:
            sources.append((variant.rank.collab_weight,
                            self.neighbours("collab", variant.collab, wanted, variant.neighbours_k)))
        blended = blend_neighbours(sources)
        recs = gate.rank_lists(user_histories, seen, blended, popular_list, variant.rank)
        self.lists[variant.name] = recs
        return gate.score_lists(recs, split.held_out, self.stage.store_movies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--users", type=int, default=None, help="score a seeded sample of N users per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=["validation"], choices=("validation", "test"))
    parser.add_argument("--variants", default=None, help="JSON file: a list of variants (name, collab, rank)")
    parser.add_argument("--baselines", action="store_true")
    parser.add_argument("--protocol", default="temporal", choices=("temporal", "leave-last-out"),
                        help="the gate's temporal holdout (default) or leave-last-out on the store's events")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from db_utils import model_versions as mv
    from db_utils.engine import get_engine
    from embeddings.collab_job import fit_pairs
    from embeddings.config import EmbeddingSettings
    from embeddings.store import VectorStore

    engine = get_engine(args.database_url)
    with engine.connect() as conn:
        events = mv.interaction_events(conn)
    content = VectorStore(EmbeddingSettings.from_env())
    ids = sorted(content.ids())
    got = content.get(ids)
    content_ids = [m for m in ids if m in got]
    content_vectors = np.stack([got[m] for m in content_ids]).astype(np.float64)
    service = ServiceSettings.from_env({})
    specs = [{"name": "defaults"}]
    if args.variants:
        with open(args.variants, encoding="utf-8") as fh:
            specs = json.load(fh)
    # unset fields: the shipped defaults (CollabConfig, RankConfig, ServiceSettings)
    defaults = dataclasses.asdict(RankConfig())  # a full record: from_record switches nothing off
    variants = [Variant(v["name"], CollabConfig(**v.get("collab", {})),
                        RankConfig.from_record({**defaults, **v.get("rank", {})}),
                        v.get("history_size", service.rank.history_size),
                        v.get("neighbours_k", service.rank.neighbours_k),
                        v.get("popular_size", service.popular_size)) for v in specs]
    report: dict[str, Any] = {}
    with threadpool_limits(1, "blas"):
        for stage in splits(events, args.users, args.seed, args.protocol):
            if stage.name not in args.splits:
                continue
            scorer = Scorer(stage, content_ids, content_vectors, fit_pairs)
            rows: dict[str, Any] = {}
            for variant in variants:
                started = time.perf_counter()
                rows[variant.name] = scorer.score(variant)
                rows[variant.name]["seconds"] = round(time.perf_counter() - started, 1)
                print(stage.name, variant.name, {k: rows[variant.name][k] for k in
                                                 ("hit_rate_at_20", "hit_rate_at_20_se", "coverage_global")},
                      flush=True)
            out: dict[str, Any] = {"stats": stage.split.stats, "variants": rows}
            if args.baselines:
                lists = gate.baseline_lists(stage.split)
                out["baselines"] = {name: gate.score_lists(recs, stage.split.held_out, stage.store_movies)
                                    for name, recs in lists.items()}
                best = max(("ease", "als"), key=lambda name: out["baselines"][name]["hit_rate_at_20"])
                theirs = gate.per_user_hits(lists[best], stage.split.held_out)
                out["paired"] = {name: {"against": best, **metrics.paired_rates(
                    gate.per_user_hits(recs, stage.split.held_out), theirs)} for name, recs in scorer.lists.items()}
                print("paired:", json.dumps(out["paired"]), flush=True)
                out["baselines"]["most_popular"] = gate.score_most_popular(stage.split, popular_size=200,
                                                                           store_movies=stage.store_movies)
                print(metrics.markdown_table({**rows, **out["baselines"]},
                                             columns=("users", "hit_rate_at_20", "hit_rate_at_20_se",
                                                      "coverage_global")), flush=True)
            report[stage.name] = out
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
